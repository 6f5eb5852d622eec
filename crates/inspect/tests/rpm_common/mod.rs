//! Shared by the rpm tests: what real `rpm -qa --qf` listed, as porthole's applications.

use porthole_inspect::packages::Application;
use porthole_testkit::guests::rpm::parse_query;

/// The packages of an `rpm -qa` listing (testkit's `QF` format), in listing order.
pub fn applications(listing: &str) -> Vec<Application> {
    parse_query(listing)
        .into_iter()
        .map(|p| Application {
            name: p.name,
            epoch: p.epoch,
            version: p.version,
            release: p.release,
            arch: p.arch,
            summary: p.summary,
            url: p.url,
            publisher: p.vendor,
            source_package: p.source_rpm,
            description: p.description,
            ..Application::default()
        })
        .collect()
}
