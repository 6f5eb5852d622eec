//! Users, groups and sudo rules: `/etc/passwd`, `/etc/shadow`, `/etc/group`, `/etc/sudoers`
//! and the files it includes.
//!
//! What an operator auditing a fleet asks first: which accounts besides root have uid 0, which
//! have an empty password or are locked, which can log in with a real shell, who is in the
//! administrator groups (`sudo`, `wheel`, `admin`) and which sudo rules grant `ALL` or
//! `NOPASSWD`.

use std::collections::{HashMap, HashSet};

use porthole_guest::GuestView;
use serde::Serialize;

use super::{list_dir, name_of, read_optional};

/// passwd/shadow/group are small; a bigger file is refused before reading.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Entries read per file at most.
pub const MAX_ENTRIES: usize = 50_000;
/// Sudoers files read at most (the main file and everything it includes).
pub const MAX_SUDOERS_FILES: usize = 256;
/// sudo's own include depth limit is 128; real configurations nest one or two levels.
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// The groups whose members are administrators on common distributions.
pub const ADMIN_GROUPS: [&str; 3] = ["sudo", "wheel", "admin"];

/// The accounts of a guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accounts {
    /// Every `/etc/passwd` entry, in file order.
    pub users: Vec<User>,
    /// Accounts with uid 0 other than `root`.
    pub uid0_non_root: Vec<String>,
    /// Accounts whose shadow password field is empty: they log in without a password.
    pub empty_passwords: Vec<String>,
    /// Members of `sudo`, `wheel` and `admin` (explicit members and users whose primary group
    /// it is), for each such group that exists.
    pub admin_groups: Vec<GroupMembers>,
    /// The user specifications of the sudoers files that grant `ALL` or `NOPASSWD`.
    pub sudo_rules: Vec<SudoRule>,
}

/// One `/etc/passwd` entry, with its shadow state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Whether the shell lets the user log in (not `nologin`, `false`, `sync`, or empty).
    pub login_shell: bool,
    pub password: PasswordState,
}

/// What the password field says, from `/etc/shadow` (or `/etc/passwd` without shadow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordState {
    /// A hash: the account can log in with a password.
    Set,
    /// Empty: no password is asked.
    Empty,
    /// Starts with `!` or `*`: password login is disabled.
    Locked,
    /// The password lives in shadow, but shadow has no entry (or no shadow file).
    Unknown,
}

/// The members of one administrator group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMembers {
    pub group: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// One sudoers user specification that grants much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SudoRule {
    /// The file holding it.
    pub source: String,
    /// The user list, blanks dropped (`%sudo`, `alice,bob`, `ALL`, `#1000`).
    pub who: String,
    /// The rule as written (continuations joined).
    pub rule: String,
    /// The command list includes `ALL`.
    pub all_commands: bool,
    /// The rule has the `NOPASSWD` tag.
    pub nopasswd: bool,
}

/// A raw `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// A raw `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The non-comment, non-empty lines of a colon-separated file, split, at most
/// [`MAX_ENTRIES`]; lines with fewer than `fields` fields are warnings.
fn colon_lines<'a>(
    text: &'a str,
    fields: usize,
    source: &str,
    warnings: &mut Vec<String>,
) -> Vec<(usize, Vec<&'a str>)> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        // NIS compat lines (`+`, `-user`) name no local account.
        if line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        if out.len() == MAX_ENTRIES {
            warnings.push(format!(
                "{source}: more than {MAX_ENTRIES} entries; the rest are ignored"
            ));
            break;
        }
        let split: Vec<&str> = line.splitn(fields + 1, ':').collect();
        if split.len() < fields {
            warnings.push(format!(
                "{source}: line {}: {} fields, want {fields}",
                index + 1,
                split.len()
            ));
            continue;
        }
        out.push((index + 1, split));
    }
    out
}

fn number(field: &str, what: &str, source: &str, line: usize) -> Result<u32, String> {
    field
        .trim()
        .parse()
        .map_err(|_| format!("{source}: line {line}: bad {what} {field:?}"))
}

/// Parses `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`).
pub fn parse_passwd(bytes: &[u8], warnings: &mut Vec<String>) -> Vec<PasswdEntry> {
    let text = String::from_utf8_lossy(bytes);
    let source = "/etc/passwd";
    let mut out = Vec::new();
    for (line, f) in colon_lines(&text, 7, source, warnings) {
        let ids = number(f[2], "uid", source, line)
            .and_then(|uid| number(f[3], "gid", source, line).map(|gid| (uid, gid)));
        match ids {
            Ok((uid, gid)) => out.push(PasswdEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                uid,
                gid,
                home: f[5].to_string(),
                shell: f[6].trim_end().to_string(),
            }),
            Err(why) => warnings.push(why),
        }
    }
    out
}

/// Parses `/etc/shadow` into each account's password state.
pub fn parse_shadow(bytes: &[u8], warnings: &mut Vec<String>) -> HashMap<String, PasswordState> {
    let text = String::from_utf8_lossy(bytes);
    colon_lines(&text, 2, "/etc/shadow", warnings)
        .into_iter()
        .map(|(_, f)| (f[0].to_string(), password_state(f[1])))
        .collect()
}

/// Parses `/etc/group` (`name:password:gid:members`).
pub fn parse_group(bytes: &[u8], warnings: &mut Vec<String>) -> Vec<GroupEntry> {
    let text = String::from_utf8_lossy(bytes);
    let source = "/etc/group";
    let mut out = Vec::new();
    for (line, f) in colon_lines(&text, 4, source, warnings) {
        match number(f[2], "gid", source, line) {
            Ok(gid) => out.push(GroupEntry {
                name: f[0].to_string(),
                gid,
                members: f[3]
                    .trim_end()
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            }),
            Err(why) => warnings.push(why),
        }
    }
    out
}

/// The state a password field (passwd or shadow) stands for.
pub fn password_state(field: &str) -> PasswordState {
    match field {
        "" => PasswordState::Empty,
        f if f.starts_with('!') || f.starts_with('*') => PasswordState::Locked,
        _ => PasswordState::Set,
    }
}

/// Whether `shell` lets a user log in interactively.
pub fn is_login_shell(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or(shell);
    !matches!(
        base,
        "" | "nologin" | "false" | "sync" | "shutdown" | "halt"
    )
}

/// What one sudoers file holds: the rules granting much, and the files and directories it
/// includes (`#include`, `@include`, `#includedir`, `@includedir`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sudoers {
    pub rules: Vec<SudoRule>,
    pub includes: Vec<String>,
    pub include_dirs: Vec<String>,
}

/// Parses one sudoers file.
pub fn parse_sudoers(bytes: &[u8], source: &str) -> Sudoers {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Sudoers::default();
    let mut pending = String::new();
    for raw in text.lines().take(MAX_ENTRIES) {
        // A trailing backslash continues the line.
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        sudoers_line(line.trim(), source, &mut out);
    }
    if !pending.is_empty() {
        sudoers_line(pending.trim(), source, &mut out);
    }
    out
}

fn sudoers_line(line: &str, source: &str, out: &mut Sudoers) {
    for (prefix, dir) in [
        ("#includedir", true),
        ("@includedir", true),
        ("#include", false),
        ("@include", false),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            if rest.starts_with(char::is_whitespace) {
                let target = rest.trim().trim_matches('"').to_string();
                if dir {
                    out.include_dirs.push(target);
                } else {
                    out.includes.push(target);
                }
                return;
            }
        }
    }
    let line = strip_comment(line).trim();
    if line.is_empty() {
        return;
    }
    let first = line.split_whitespace().next().unwrap_or_default();
    if first.starts_with("Defaults")
        || matches!(
            first,
            "User_Alias" | "Runas_Alias" | "Host_Alias" | "Cmnd_Alias" | "Cmd_Alias"
        )
    {
        return;
    }
    let Some((head, commands)) = line.split_once('=') else {
        return;
    };
    let who = user_list(head);
    // Drop a `(runas)` list, then look at tags and commands.
    let commands = match commands.trim_start().strip_prefix('(') {
        Some(rest) => rest.split_once(')').map_or("", |(_, c)| c),
        None => commands,
    };
    let nopasswd = commands.contains("NOPASSWD:");
    let all_commands = commands
        .split(',')
        .map(|c| c.rsplit(':').next().unwrap_or(c).trim())
        .any(|c| c == "ALL");
    if all_commands || nopasswd {
        out.rules.push(SudoRule {
            source: source.to_string(),
            who,
            rule: line.to_string(),
            all_commands,
            nopasswd,
        });
    }
}

/// `line` up to its comment: a `#` not followed by a digit (`#1000` is a uid).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let at = bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b'#' && !bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit()));
    at.and_then(|i| line.get(..i)).unwrap_or(line)
}

/// The user list of a user specification's `users hosts` head: items are separated by commas
/// with optional blanks around them, the list ends at the first other blank.
fn user_list(head: &str) -> String {
    let mut out = String::new();
    let mut after_comma = true;
    for word in head.split_whitespace() {
        if !after_comma && !word.starts_with(',') {
            break;
        }
        out.push_str(word);
        after_comma = word.ends_with(',');
    }
    out
}

/// Reads the accounts of a guest.
pub fn read(view: &GuestView, warnings: &mut Vec<String>) -> Accounts {
    let passwd = read_optional(view, "/etc/passwd", MAX_FILE_BYTES, warnings)
        .map(|b| parse_passwd(&b, warnings))
        .unwrap_or_default();
    let shadow = read_optional(view, "/etc/shadow", MAX_FILE_BYTES, warnings)
        .map(|b| parse_shadow(&b, warnings));
    let groups = read_optional(view, "/etc/group", MAX_FILE_BYTES, warnings)
        .map(|b| parse_group(&b, warnings))
        .unwrap_or_default();
    let mut accounts = Accounts {
        users: users(&passwd, shadow.as_ref()),
        sudo_rules: read_sudoers(view, warnings),
        ..Accounts::default()
    };
    for user in &accounts.users {
        if user.uid == 0 && user.name != "root" {
            accounts.uid0_non_root.push(user.name.clone());
        }
        if user.password == PasswordState::Empty {
            accounts.empty_passwords.push(user.name.clone());
        }
    }
    accounts.admin_groups = admin_groups(&groups, &passwd);
    accounts
}

fn users(passwd: &[PasswdEntry], shadow: Option<&HashMap<String, PasswordState>>) -> Vec<User> {
    passwd
        .iter()
        .map(|p| {
            // `x` sends the reader to shadow; anything else is the password field itself.
            let password = if p.password == "x" {
                shadow
                    .and_then(|s| s.get(&p.name).copied())
                    .unwrap_or(PasswordState::Unknown)
            } else {
                password_state(&p.password)
            };
            User {
                name: p.name.clone(),
                uid: p.uid,
                gid: p.gid,
                home: p.home.clone(),
                shell: p.shell.clone(),
                login_shell: is_login_shell(&p.shell),
                password,
            }
        })
        .collect()
}

fn admin_groups(groups: &[GroupEntry], passwd: &[PasswdEntry]) -> Vec<GroupMembers> {
    groups
        .iter()
        .filter(|g| ADMIN_GROUPS.contains(&g.name.as_str()))
        .map(|g| {
            let mut members = g.members.clone();
            for p in passwd.iter().filter(|p| p.gid == g.gid) {
                if !members.contains(&p.name) {
                    members.push(p.name.clone());
                }
            }
            GroupMembers {
                group: g.name.clone(),
                gid: g.gid,
                members,
            }
        })
        .collect()
}

/// `/etc/sudoers` and what it includes, breadth first, each file once, bounded in depth and
/// count. As sudo does, files in an included directory whose names end in `~` or contain a `.`
/// are skipped.
fn read_sudoers(view: &GuestView, warnings: &mut Vec<String>) -> Vec<SudoRule> {
    let mut rules = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = vec![("/etc/sudoers".to_string(), 0usize)];
    while let Some((path, depth)) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        if seen.len() > MAX_SUDOERS_FILES {
            warnings.push(format!(
                "sudoers: more than {MAX_SUDOERS_FILES} files; the rest are ignored"
            ));
            break;
        }
        let Some(bytes) = read_optional(view, &path, MAX_FILE_BYTES, warnings) else {
            continue;
        };
        let parsed = parse_sudoers(&bytes, &path);
        rules.extend(parsed.rules);
        if depth >= MAX_INCLUDE_DEPTH {
            if !parsed.includes.is_empty() || !parsed.include_dirs.is_empty() {
                warnings.push(format!(
                    "{path}: includes nested deeper than {MAX_INCLUDE_DEPTH}; not followed"
                ));
            }
            continue;
        }
        let mut next = Vec::new();
        for include in parsed.includes {
            next.push(absolute(&path, &include));
        }
        for dir in parsed.include_dirs {
            let dir = absolute(&path, &dir);
            for entry in list_dir(view, &dir, warnings) {
                let name = name_of(&entry);
                if name.ends_with('~') || name.contains('.') {
                    continue;
                }
                next.push(format!("{}/{name}", dir.trim_end_matches('/')));
            }
        }
        // Reversed so that popping reads them in order.
        queue.extend(next.into_iter().rev().map(|p| (p, depth + 1)));
    }
    rules
}

/// A relative include is relative to the including file's directory (sudo 1.9).
fn absolute(from: &str, include: &str) -> String {
    if include.starts_with('/') {
        return include.to_string();
    }
    let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{include}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_shadow_group() {
        let mut w = Vec::new();
        let passwd = parse_passwd(
            b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
bob::1001:1001::/home/bob:/bin/false\nbad:x:zero:0::/:/bin/sh\nshort:x\n+nis\n",
            &mut w,
        );
        assert_eq!(passwd.len(), 5);
        assert_eq!(w.len(), 2, "{w:?}");
        let shadow = parse_shadow(
            b"root:$6$salt$hash:19000:0:99999:7:::\ntoor::19000::::::\ndaemon:*:19000::::::\n\
alice:!$6$x:19000::::::\n",
            &mut w,
        );
        let users = users(&passwd, Some(&shadow));
        let states: Vec<_> = users
            .iter()
            .map(|u| (u.name.as_str(), u.password))
            .collect();
        assert_eq!(
            states,
            [
                ("root", PasswordState::Set),
                ("toor", PasswordState::Empty),
                ("daemon", PasswordState::Locked),
                ("alice", PasswordState::Locked),
                ("bob", PasswordState::Empty),
            ]
        );
        assert!(!users[2].login_shell && users[3].login_shell && !users[4].login_shell);
        let groups = parse_group(b"root:x:0:\nsudo:x:27:alice,carol\nwheel:x:10:\n", &mut w);
        let admins = admin_groups(&groups, &passwd);
        assert_eq!(admins.len(), 2);
        assert_eq!(admins[0].members, ["alice", "carol"]);
    }

    #[test]
    fn sudoers_rules_and_includes() {
        let s = parse_sudoers(
            b"Defaults env_reset\nCmnd_Alias X = /bin/ls\nroot ALL=(ALL:ALL) ALL\n\
%sudo ALL=(ALL:ALL) ALL # admins\nbob ALL=(root) NOPASSWD: /usr/bin/apt, \\\n  /usr/bin/ls\n\
carol host=/usr/bin/id\n#includedir /etc/sudoers.d\n@include extra\n# a comment\n",
            "/etc/sudoers",
        );
        let who: Vec<_> = s.rules.iter().map(|r| r.who.as_str()).collect();
        assert_eq!(who, ["root", "%sudo", "bob"]);
        assert!(s.rules[1].all_commands && !s.rules[1].nopasswd);
        assert!(!s.rules[2].all_commands && s.rules[2].nopasswd);
        assert_eq!(s.include_dirs, ["/etc/sudoers.d"]);
        assert_eq!(s.includes, ["extra"]);
        assert_eq!(absolute("/etc/sudoers", "extra"), "/etc/extra");
        let nopass_all = parse_sudoers(b"deploy ALL=(ALL) NOPASSWD:ALL\n", "f");
        assert!(nopass_all.rules[0].all_commands && nopass_all.rules[0].nopasswd);
    }
}
