//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), as configured in
//! `attribution.selector`: which pods podtap captures and reports.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A label selector. Empty selects every pod.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LabelSelector {
    /// Every key must be present with exactly this value.
    pub match_labels: BTreeMap<String, String>,
    /// Every requirement must hold.
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Does a pod with these labels match?
    pub fn matches<'a, I>(&self, labels: I) -> bool
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let get = |key: &str| {
            labels
                .clone()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        };
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| {
                let have = get(&r.key);
                match r.operator {
                    Operator::In => have.is_some_and(|v| r.values.iter().any(|x| x == v)),
                    Operator::NotIn => have.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }

    /// Checks serde cannot express: `In`/`NotIn` need values, `Exists`/`DoesNotExist` none.
    /// Returns the offending key path below the selector and a message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, r) in self.match_expressions.iter().enumerate() {
            let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
            if needs_values == r.values.is_empty() {
                let msg = if needs_values {
                    format!("operator {:?} needs at least one value", r.operator)
                } else {
                    format!("operator {:?} takes no values", r.operator)
                };
                return Err((format!("match_expressions[{i}].values"), msg));
            }
            if r.key.is_empty() {
                return Err((
                    format!("match_expressions[{i}].key"),
                    "must not be empty".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(toml_text: &str) -> LabelSelector {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn match_labels_and_expressions() {
        let s = sel(r#"
            match_labels = { app = "web" }
            match_expressions = [
              { key = "tier", operator = "In", values = ["front", "edge"] },
              { key = "canary", operator = "DoesNotExist" },
              { key = "env", operator = "NotIn", values = ["dev"] },
            ]"#);
        assert!(s.validate().is_ok());
        let m = |l: &[(&str, &str)]| s.matches(l.iter().copied());
        assert!(m(&[("app", "web"), ("tier", "front")]));
        assert!(m(&[("app", "web"), ("tier", "edge"), ("env", "prod")]));
        assert!(!m(&[("app", "web"), ("tier", "back")]));
        assert!(!m(&[("app", "api"), ("tier", "front")]));
        assert!(!m(&[("app", "web"), ("tier", "front"), ("canary", "1")]));
        assert!(!m(&[("app", "web"), ("tier", "front"), ("env", "dev")]));
        assert!(LabelSelector::default().matches(std::iter::empty()));
        let exists = sel(r#"match_expressions = [{ key = "team", operator = "Exists" }]"#);
        assert!(exists.matches([("team", "x")]));
        assert!(!exists.matches(std::iter::empty()));
    }

    #[test]
    fn invalid_requirements_are_named() {
        let s = sel(
            r#"match_expressions = [{ key = "a", operator = "Exists" }, { key = "b", operator = "In" }]"#,
        );
        let (key, msg) = s.validate().unwrap_err();
        assert_eq!(key, "match_expressions[1].values");
        assert!(msg.contains("needs at least one value"), "{msg}");
        assert!(
            toml::from_str::<LabelSelector>(
                r#"match_expressions = [{ key = "a", operator = "Maybe" }]"#
            )
            .is_err()
        );
    }
}
