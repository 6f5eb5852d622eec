//! The architecture of a guest, from the ELF header of a binary every Linux has (virt-inspector
//! reads `/bin/bash`, `/bin/ls`, ... the same way).

use porthole_guest::GuestView;

/// Binaries tried in order; usr-merged guests reach them through the `/bin` link.
pub const PROBED_BINARIES: &[&str] = &["/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh"];

/// The architecture name of the first probed binary that is an ELF file.
pub fn guest_arch(view: &GuestView) -> Option<&'static str> {
    PROBED_BINARIES.iter().find_map(|path| {
        let mut header = [0u8; 20];
        let n = view.read_at(path.as_bytes(), 0, &mut header).ok()?;
        arch_of(header.get(..n)?)
    })
}

/// The architecture named by an ELF header (`uname -m`'s words), `None` if it is not ELF.
pub fn arch_of(header: &[u8]) -> Option<&'static str> {
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let class64 = *header.get(4)? == 2;
    let little = *header.get(5)? == 1;
    let machine_bytes = [*header.get(18)?, *header.get(19)?];
    let machine = if little {
        u16::from_le_bytes(machine_bytes)
    } else {
        u16::from_be_bytes(machine_bytes)
    };
    Some(match (machine, class64, little) {
        (3, _, _) => "i386",
        (62, _, _) => "x86_64",
        (183, _, _) => "aarch64",
        (40, _, _) => "arm",
        (243, true, _) => "riscv64",
        (243, false, _) => "riscv32",
        (21, _, true) => "ppc64le",
        (21, _, false) => "ppc64",
        (20, _, _) => "ppc",
        (22, true, _) => "s390x",
        (22, false, _) => "s390",
        (8, true, _) => "mips64",
        (8, false, _) => "mips",
        (258, _, _) => "loongarch64",
        (2, _, _) => "sparc",
        (43, _, _) => "sparc64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::arch_of;

    #[test]
    fn this_machines_binaries() {
        let header = std::fs::read("/bin/ls").expect("read /bin/ls");
        assert_eq!(arch_of(&header[..20]), Some(std::env::consts::ARCH));
        assert_eq!(arch_of(b"#!/bin/sh\n"), None);
        assert_eq!(arch_of(b"\x7fELF"), None);
    }
}
