//! REST on tape: `Taping` records what a live transport answered; `Tape` answers the same
//! requests from a recording, in order, and nothing else.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::RestGet;
use crate::market::rest::{RestError, RestTransport};

/// A transport that keeps every request and answer it passes on.
pub struct Taping<T> {
    inner: T,
    gets: RefCell<Vec<RestGet>>,
}

impl<T: RestTransport> Taping<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            gets: RefCell::new(Vec::new()),
        }
    }

    /// What was asked and answered so far, emptied.
    pub fn take(&self) -> Vec<RestGet> {
        std::mem::take(&mut self.gets.borrow_mut())
    }
}

impl<T: RestTransport> RestTransport for Taping<T> {
    fn get(&self, target: &str) -> Result<String, RestError> {
        let answer = self.inner.get(target);
        let (body, error) = match &answer {
            Ok(b) => (Some(b.clone()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.gets.borrow_mut().push(RestGet {
            target: target.to_string(),
            body,
            error,
        });
        answer
    }
}

/// Recorded answers, handed out to the same requests in the same order. A request the
/// tape does not hold next fails, and is counted.
pub struct Tape {
    gets: RefCell<VecDeque<RestGet>>,
    unmatched: RefCell<Vec<String>>,
}

impl Tape {
    pub fn new(gets: Vec<RestGet>) -> Self {
        Self {
            gets: RefCell::new(gets.into()),
            unmatched: RefCell::new(Vec::new()),
        }
    }

    /// Requests the tape could not answer, and recorded requests never asked for.
    pub fn mismatches(&self) -> Vec<String> {
        let mut m = self.unmatched.borrow().clone();
        m.extend(
            self.gets
                .borrow()
                .iter()
                .map(|g| format!("recorded but not asked: {}", g.target)),
        );
        m
    }
}

impl RestTransport for Tape {
    fn get(&self, target: &str) -> Result<String, RestError> {
        let mut gets = self.gets.borrow_mut();
        if gets.front().is_some_and(|g| g.target == target) {
            if let Some(g) = gets.pop_front() {
                return match (g.body, g.error) {
                    (Some(body), _) => Ok(body),
                    (None, error) => Err(RestError::Http {
                        url: target.to_string(),
                        reason: error.unwrap_or_default(),
                    }),
                };
            }
        }
        self.unmatched
            .borrow_mut()
            .push(format!("asked but not recorded: {target}"));
        Err(RestError::Http {
            url: target.to_string(),
            reason: "not in the recording".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl RestTransport for Echo {
        fn get(&self, target: &str) -> Result<String, RestError> {
            if target.contains("fail") {
                return Err(RestError::Http {
                    url: target.into(),
                    reason: "HTTP 500".into(),
                });
            }
            Ok(format!("body of {target}"))
        }
    }

    #[test]
    fn a_tape_answers_what_was_taped_in_order_and_names_the_rest() {
        let taping = Taping::new(Echo);
        assert!(taping.get("/a").is_ok());
        assert!(taping.get("/fail").is_err());
        let tape = Tape::new(taping.take());
        assert_eq!(tape.get("/a").ok().as_deref(), Some("body of /a"));
        assert!(tape.get("/other").is_err());
        assert!(tape.get("/fail").is_err());
        assert_eq!(tape.mismatches(), vec!["asked but not recorded: /other"]);
    }
}
