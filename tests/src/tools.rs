//! The programs some tests drive besides Postern: a real browser, swaks, Python. A test
//! whose program is missing fails, so a run on a machine without them cannot pass by
//! testing less. Skipping is a decision someone writes down: `POSTERN_TEST_SKIP` names the
//! tools to do without (comma-separated: `browser,swaks,python,perl,curl`), and each test skipped
//! that way says so on stderr.

use std::process::Command;

/// A program (or set of programs) some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Chromium and chromedriver, for the console tests.
    Browser,
    /// swaks, the seed document's SMTP client (with Net::SSLeay for STARTTLS).
    Swaks,
    /// Python 3 with `venv`, for the differential checks (its `email` package) and the
    /// smart hosts (aiosmtpd, installed into a virtual environment under `target/`).
    Python,
    /// Perl's Net::SMTP with IO::Socket::SSL and Authen::SASL (STARTTLS and AUTH).
    Perl,
    /// curl, as an SMTP client.
    Curl,
}

impl Tool {
    /// The name `POSTERN_TEST_SKIP` uses.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Browser => "browser",
            Tool::Swaks => "swaks",
            Tool::Python => "python",
            Tool::Perl => "perl",
            Tool::Curl => "curl",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Tool::Browser => "apt-get install chromium chromium-driver",
            Tool::Swaks => "apt-get install swaks libnet-ssleay-perl libio-socket-ssl-perl",
            Tool::Python => "apt-get install python3 python3-venv",
            Tool::Perl => "apt-get install perl libio-socket-ssl-perl libauthen-sasl-perl",
            Tool::Curl => "apt-get install curl",
        }
    }

    fn installed(self) -> bool {
        let runs = |program: &str, args: &[&str]| {
            Command::new(program).args(args).output().is_ok_and(|out| out.status.success())
        };
        match self {
            Tool::Browser => runs("chromedriver", &["--version"]) && runs("chromium", &["--version"]),
            Tool::Swaks => runs("swaks", &["--version"]),
            Tool::Python => runs("python3", &["-c", "import venv, email"]),
            Tool::Perl => runs("perl", &["-MNet::SMTP", "-MIO::Socket::SSL", "-MAuthen::SASL", "-e1"]),
            Tool::Curl => runs("curl", &["--version"]),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Run,
    Skip,
    Fail,
}

/// What a test does about `tool`: `skip_list` is the value of `POSTERN_TEST_SKIP`.
fn outcome(tool: Tool, installed: bool, skip_list: &str) -> Outcome {
    if installed {
        Outcome::Run
    } else if skip_list.split(',').map(str::trim).any(|name| name.eq_ignore_ascii_case(tool.name())) {
        Outcome::Skip
    } else {
        Outcome::Fail
    }
}

/// True when `tool` is installed. When it is not, the test fails, unless
/// `POSTERN_TEST_SKIP` names it: then this says the test was skipped and returns false.
pub fn require(tool: Tool) -> bool {
    let skip_list = std::env::var("POSTERN_TEST_SKIP").unwrap_or_default();
    match outcome(tool, tool.installed(), &skip_list) {
        Outcome::Run => true,
        Outcome::Skip => {
            // Straight to the process's stderr: libtest captures `eprintln!` of passing
            // tests, and a skip must be seen.
            use std::io::Write as _;
            let _ =
                writeln!(std::io::stderr(), "SKIPPED: {} is not installed and POSTERN_TEST_SKIP names it", tool.name());
            false
        }
        Outcome::Fail => panic!(
            "{} is not installed ({}); set POSTERN_TEST_SKIP={} to run the other tests without it",
            tool.name(),
            tool.install_hint(),
            tool.name()
        ),
    }
}

/// Ends the test early (as skipped) when `tool` is missing and `POSTERN_TEST_SKIP` names
/// it; fails it when the tool is missing and not named.
#[macro_export]
macro_rules! require_tool {
    ($tool:ident) => {
        if !$crate::tools::require($crate::tools::Tool::$tool) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_fails_the_test_unless_the_skip_list_names_it() {
        assert_eq!(outcome(Tool::Browser, true, "browser"), Outcome::Run, "installed tools always run");
        assert_eq!(outcome(Tool::Browser, false, ""), Outcome::Fail);
        assert_eq!(outcome(Tool::Browser, false, "browser"), Outcome::Skip);
        assert_eq!(outcome(Tool::Browser, false, "swaks, Browser"), Outcome::Skip);
        assert_eq!(outcome(Tool::Python, false, "browser,swaks,python"), Outcome::Skip);
        assert_eq!(outcome(Tool::Browser, false, "browsers"), Outcome::Fail, "names match whole");
        assert_eq!(outcome(Tool::Swaks, false, "browser"), Outcome::Fail, "another tool's name");
    }
}
