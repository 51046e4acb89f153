use std::fmt;

/// One bad configuration field: its dotted path (`store.bucket`) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the field, as written in the config file.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found while validating a configuration, so they can be reported at once.
#[derive(Debug, Default, Clone)]
pub struct ConfigProblems(Vec<ConfigProblem>);

impl ConfigProblems {
    /// Records a problem with `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records a problem with `field` when `path` is set but is not a file that exists.
    pub fn check_file(&mut self, field: impl Into<String>, path: Option<&std::path::Path>) {
        if let Some(path) = path {
            if !path.is_file() {
                self.push(
                    field,
                    format!("`{}` is not a readable file", path.display()),
                );
            }
        }
    }

    /// True when no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigProblem> {
        self.0.iter()
    }

    /// `Ok(())` when nothing was found, else every problem as one error.
    pub fn into_result(self) -> Result<(), ConfigProblems> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration problem(s):", self.0.len())?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}
