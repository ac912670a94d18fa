//! Config errors: where (file, line), what (key, value) and the problem.
//! (Stub: the config work replaces this with the full design.)

use std::fmt;

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// How the file is named (the path as given, or `demo.toml`).
    pub origin: String,
    /// 1-based line, where it can be known.
    pub line: Option<usize>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.problem),
            None => write!(f, "{}: {}", self.origin, self.problem),
        }
    }
}

/// Every problem found in one pass over a config; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The file could not be read.
    pub fn io(origin: &str, err: &std::io::Error) -> Self {
        ConfigErrors(vec![ConfigError {
            origin: origin.to_string(),
            line: None,
            problem: format!("cannot read the file: {}", crate::error::io_reason(err)),
        }])
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}
