//! `flotilla-cni`: the CNI plugin containerd executes for every pod sandbox.
//!
//! VERSION is answered per the CNI 1.1.0 spec. The network commands (ADD, DEL, CHECK, STATUS, GC)
//! arrive with issue 5; until then they fail with a CNI error result instead of pretending success.

use std::{io::Write as _, process::ExitCode};

use serde_json::json;

/// CNI versions this plugin speaks.
const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The newest CNI version, used in results when the caller did not ask for one.
const CNI_VERSION: &str = "1.1.0";

/// CNI error code 4: invalid necessary environment variables.
const ERR_INVALID_ENV: u32 = 4;
/// Flotilla's own error code: the command is not implemented in this build.
const ERR_NOT_IMPLEMENTED: u32 = 100;

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let (result, ok) = respond(&command);
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{result}").is_err() {
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The JSON to print for `command` and whether it is a success.
fn respond(command: &str) -> (serde_json::Value, bool) {
    match command {
        "VERSION" => (
            json!({"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS}),
            true,
        ),
        "ADD" | "DEL" | "CHECK" | "STATUS" | "GC" => (
            error(
                ERR_NOT_IMPLEMENTED,
                &format!("CNI_COMMAND {command} is not implemented by this flotilla-cni build"),
                "pod networking arrives with Flotilla's CNI/overlay work (issue 5)",
            ),
            false,
        ),
        "" => (
            error(
                ERR_INVALID_ENV,
                "CNI_COMMAND is not set",
                "set CNI_COMMAND to one of ADD, DEL, CHECK, STATUS, GC, VERSION",
            ),
            false,
        ),
        other => (
            error(
                ERR_INVALID_ENV,
                &format!("unknown CNI_COMMAND {other:?}"),
                "set CNI_COMMAND to one of ADD, DEL, CHECK, STATUS, GC, VERSION",
            ),
            false,
        ),
    }
}

fn error(code: u32, msg: &str, details: &str) -> serde_json::Value {
    json!({"cniVersion": CNI_VERSION, "code": code, "msg": msg, "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_the_supported_spec_versions() {
        let (result, ok) = respond("VERSION");
        assert!(ok);
        assert_eq!(result["cniVersion"], "1.1.0");
        assert_eq!(
            result["supportedVersions"],
            json!(["0.4.0", "1.0.0", "1.1.0"])
        );
    }

    #[test]
    fn unknown_or_missing_commands_are_cni_error_4() {
        for command in ["", "ATTACH"] {
            let (result, ok) = respond(command);
            assert!(!ok);
            assert_eq!(result["code"], 4, "{command:?}");
        }
    }

    #[test]
    fn network_commands_fail_instead_of_pretending() {
        let (result, ok) = respond("ADD");
        assert!(!ok);
        assert_eq!(result["code"], 100);
    }
}
