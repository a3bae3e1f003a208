//! The one error calicoctl commands return: a message for stderr, exit code 1.

/// A command failure: `message` goes to stderr as one line, the process exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub message: String,
}

impl CliError {
    /// A failure with Calico's message.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
        }
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
