//! Label and field selectors as kube-apiserver understands them: `?labelSelector=`,
//! `?fieldSelector=` and metav1.LabelSelector objects inside specs. The grammar, validation and
//! matching follow k8s.io/apimachinery/pkg/labels and pkg/fields, so kubectl and client-go get the
//! same accept/reject decisions and the same matches as against a real cluster.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaLabelSelector;
use serde_json::Value;

use crate::names::{is_label_value, is_qualified_name};

/// Why a selector could not be parsed, built or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector text has a token where the grammar needs something else.
    #[error("found {found}, expected: {expected}")]
    UnexpectedToken {
        /// The offending token, quoted, or `end of string`.
        found: String,
        /// What the grammar allows at that point.
        expected: &'static str,
    },
    /// One requirement of a label selector string is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    InvalidRequirement(Box<SelectorError>),
    /// A label key is not a qualified name (optional DNS subdomain prefix, '/', name).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidLabelKey {
        /// The rejected key.
        key: String,
        /// Which rule the key breaks.
        reason: String,
    },
    /// A label value is too long or has characters labels cannot hold.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidLabelValue {
        /// The key the value belongs to.
        key: String,
        /// The rejected value.
        value: String,
        /// Which rule the value breaks.
        reason: String,
    },
    /// The number or kind of values does not fit the operator.
    #[error("invalid values {values:?} for label key {key:?}: {reason}")]
    InvalidValues {
        /// The key of the requirement.
        key: String,
        /// The values given.
        values: Vec<String>,
        /// What the operator needs.
        reason: &'static str,
    },
    /// A `matchExpressions` operator other than `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[error(
        "{operator:?} is not a valid label selector operator (expected In, NotIn, Exists or DoesNotExist)"
    )]
    UnknownOperator {
        /// The rejected operator.
        operator: String,
    },
    /// A metav1.LabelSelector object does not have the expected JSON shape.
    #[error("invalid label selector: {field}: {reason}")]
    MalformedLabelSelector {
        /// Where in the selector object the problem is, e.g. `matchExpressions[0].values`.
        field: String,
        /// What was expected there.
        reason: &'static str,
    },
    /// A field selector term is not `field=value`, `field==value` or `field!=value`.
    #[error("invalid field selector {selector:?}: can't understand {term:?}: {reason}")]
    MalformedFieldTerm {
        /// The whole field selector.
        selector: String,
        /// The offending comma-separated term.
        term: String,
        /// What is wrong with the term.
        reason: &'static str,
    },
    /// A field selector value has a backslash not followed by `\`, `,` or `=`.
    #[error(
        "invalid field selector value {value:?}: invalid escape sequence '{sequence}' (only \\\\, \\, and \\= are allowed)"
    )]
    InvalidEscapeSequence {
        /// The raw (still escaped) value.
        value: String,
        /// The bad escape sequence.
        sequence: String,
    },
    /// A field selector value has a bare `,` or `=`, which must be escaped with a backslash.
    #[error(
        "invalid field selector value {value:?}: unescaped character '{character}' (write it as '\\{character}')"
    )]
    UnescapedCharacter {
        /// The raw (still escaped) value.
        value: String,
        /// The character that needs escaping.
        character: char,
    },
    /// The field selector uses a field the resource cannot be filtered by.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The unsupported field path.
        field: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// Labels a selector can be matched against, whatever map holds them.
pub trait LabelSet {
    /// The value of label `key`, if the set has it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON `metadata.labels` object; a value that is not a string is no label.
impl LabelSet for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// No labels at all (an object without `metadata.labels`).
impl LabelSet for () {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// How a label requirement compares a label against its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelOperator {
    /// `key=value`: the label exists and equals the value.
    Equals,
    /// `key==value`: same as `Equals`, kept apart so the selector renders back as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or differs from the value.
    NotEquals,
    /// `key in (a,b)`: the label exists and is one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or none of the values.
    NotIn,
    /// `key`: the label exists, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>N`: the label exists, is an integer, and is greater than N.
    GreaterThan,
    /// `key<N`: the label exists, is an integer, and is less than N.
    LessThan,
}

/// One validated condition of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    // Sorted and deduplicated, so matching can binary-search and rendering is canonical.
    values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement with the key, value and value-count checks of `labels.NewRequirement`.
    pub fn new<I, S>(key: &str, operator: LabelOperator, values: I) -> Result<Self, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        validate_label_key(key)?;
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        check_value_count(key, operator, &values)?;
        for value in &values {
            validate_label_value(key, value)?;
        }
        values.sort_unstable();
        values.dedup();
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// The label key this requirement looks at.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The comparison this requirement makes.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values compared against, sorted and without duplicates.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &(impl LabelSet + ?Sized)) -> bool {
        let actual = labels.label(&self.key);
        let listed = |value: &str| {
            self.values
                .binary_search_by(|listed| listed.as_str().cmp(value))
                .is_ok()
        };
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                actual.is_some_and(listed)
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                actual.is_none_or(|value| !listed(value))
            }
            LabelOperator::Exists => actual.is_some(),
            LabelOperator::DoesNotExist => actual.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                // A label that is not an integer never satisfies a numeric comparison.
                let actual = actual.and_then(|value| value.parse::<i64>().ok());
                let bound = self
                    .values
                    .first()
                    .and_then(|value| value.parse::<i64>().ok());
                match (actual, bound) {
                    (Some(actual), Some(bound)) if self.operator == LabelOperator::GreaterThan => {
                        actual > bound
                    }
                    (Some(actual), Some(bound)) => actual < bound,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = self.values.join(",");
        match self.operator {
            LabelOperator::Exists => write!(f, "{key}"),
            LabelOperator::DoesNotExist => write!(f, "!{key}"),
            LabelOperator::In => write!(f, "{key} in ({values})"),
            LabelOperator::NotIn => write!(f, "{key} notin ({values})"),
            LabelOperator::Equals => write!(f, "{key}={values}"),
            LabelOperator::DoubleEquals => write!(f, "{key}=={values}"),
            LabelOperator::NotEquals => write!(f, "{key}!={values}"),
            LabelOperator::GreaterThan => write!(f, "{key}>{values}"),
            LabelOperator::LessThan => write!(f, "{key}<{values}"),
        }
    }
}

/// A conjunction of label requirements; with none it matches every label set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    // Sorted by key (stable), as apimachinery does, so rendering is deterministic.
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector requiring all of `requirements`.
    pub fn from_requirements(mut requirements: Vec<LabelRequirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Whether the selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &(impl LabelSet + ?Sized)) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_comma_separated(f, &self.requirements)
    }
}

/// Requirements joined by commas, as both selectors render them.
fn write_comma_separated(f: &mut fmt::Formatter<'_>, items: &[impl fmt::Display]) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_label_selector(text)
    }
}

/// Parses a `?labelSelector=` string; the empty string matches everything.
pub fn parse_label_selector(text: &str) -> Result<LabelSelector, SelectorError> {
    let mut parser = LabelParser {
        tokens: tokenize(text),
        position: 0,
    };
    let mut requirements = Vec::new();
    loop {
        match parser.peek() {
            Token::End => break,
            Token::Identifier(_) | Token::Bang => {
                let requirement = parser
                    .requirement()
                    .map_err(|error| SelectorError::InvalidRequirement(Box::new(error)))?;
                requirements.push(requirement);
                match parser.next() {
                    Token::End => break,
                    Token::Comma => match parser.peek() {
                        Token::Identifier(_) | Token::Bang => {}
                        other => return Err(other.unexpected("identifier after ','")),
                    },
                    other => return Err(other.unexpected("',' or end of string")),
                }
            }
            other => return Err(other.unexpected("'!', identifier, or end of string")),
        }
    }
    Ok(LabelSelector::from_requirements(requirements))
}

/// Converts a metav1.LabelSelector object; `None` or JSON null gives `Ok(None)`, which callers
/// must treat as matching nothing (Kubernetes' nil selector), while `{}` matches everything.
pub fn label_selector_from_json(
    selector: Option<&Value>,
) -> Result<Option<LabelSelector>, SelectorError> {
    let object = match selector {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(malformed_selector(
                "selector",
                "must be a JSON object or null",
            ));
        }
    };
    let mut requirements = Vec::new();
    match object.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let Value::String(value) = value else {
                    return Err(malformed_selector(
                        &format!("matchLabels[{key:?}]"),
                        "must be a string",
                    ));
                };
                requirements.push(LabelRequirement::new(
                    key,
                    LabelOperator::Equals,
                    [value.as_str()],
                )?);
            }
        }
        Some(_) => {
            return Err(malformed_selector(
                "matchLabels",
                "must be an object of label keys to values",
            ));
        }
    }
    match object.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(expressions)) => {
            for (index, expression) in expressions.iter().enumerate() {
                requirements.push(expression_requirement(index, expression)?);
            }
        }
        Some(_) => return Err(malformed_selector("matchExpressions", "must be a list")),
    }
    Ok(Some(LabelSelector::from_requirements(requirements)))
}

impl TryFrom<&MetaLabelSelector> for LabelSelector {
    type Error = SelectorError;

    /// `metav1.LabelSelectorAsSelector` for a typed selector; an empty one matches everything.
    fn try_from(selector: &MetaLabelSelector) -> Result<Self, Self::Error> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(LabelRequirement::new(
                key,
                LabelOperator::Equals,
                [value.as_str()],
            )?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            requirements.push(LabelRequirement::new(
                &expression.key,
                selector_operator(&expression.operator)?,
                expression.values.iter().flatten().map(String::as_str),
            )?);
        }
        Ok(Self::from_requirements(requirements))
    }
}

/// `NodeSelectorRequirementsAsSelector`: a node affinity term's `matchExpressions` (which also
/// allow `Gt` and `Lt`) as one selector.
pub fn node_selector_requirements(
    requirements: &[NodeSelectorRequirement],
) -> Result<LabelSelector, SelectorError> {
    let requirements = requirements
        .iter()
        .map(|requirement| {
            let operator = match requirement.operator.as_str() {
                "Gt" => LabelOperator::GreaterThan,
                "Lt" => LabelOperator::LessThan,
                other => selector_operator(other)?,
            };
            LabelRequirement::new(
                &requirement.key,
                operator,
                requirement.values.iter().flatten().map(String::as_str),
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(LabelSelector::from_requirements(requirements))
}

/// The operator of a `matchExpressions` entry.
fn selector_operator(operator: &str) -> Result<LabelOperator, SelectorError> {
    match operator {
        "In" => Ok(LabelOperator::In),
        "NotIn" => Ok(LabelOperator::NotIn),
        "Exists" => Ok(LabelOperator::Exists),
        "DoesNotExist" => Ok(LabelOperator::DoesNotExist),
        other => Err(SelectorError::UnknownOperator {
            operator: other.to_owned(),
        }),
    }
}

/// `SelectorFromValidatedSet(set).Matches(labels)`: whether `labels` has every `key=value` of a
/// plain label map (a Service's or ReplicationController's selector, a pod's nodeSelector).
/// Upstream does not validate these sets when matching, so neither does this; an empty set
/// matches everything.
pub fn set_matches<'a>(
    set: impl IntoIterator<Item = (&'a String, &'a String)>,
    labels: &(impl LabelSet + ?Sized),
) -> bool {
    set.into_iter()
        .all(|(key, value)| labels.label(key) == Some(value.as_str()))
}

/// The `metadata.labels` of an object; non-string values (never valid in Kubernetes) are skipped.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn expression_requirement(
    index: usize,
    expression: &Value,
) -> Result<LabelRequirement, SelectorError> {
    let path = |field: &str| format!("matchExpressions[{index}]{field}");
    let Some(expression) = expression.as_object() else {
        return Err(malformed_selector(&path(""), "must be an object"));
    };
    let Some(key) = expression.get("key").and_then(Value::as_str) else {
        return Err(malformed_selector(&path(".key"), "must be a string"));
    };
    let Some(operator) = expression.get("operator").and_then(Value::as_str) else {
        return Err(malformed_selector(&path(".operator"), "must be a string"));
    };
    let operator = selector_operator(operator)?;
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => {
            let strings: Option<Vec<&str>> = values.iter().map(Value::as_str).collect();
            let Some(strings) = strings else {
                return Err(malformed_selector(
                    &path(".values"),
                    "must be a list of strings",
                ));
            };
            strings
        }
        Some(_) => {
            return Err(malformed_selector(
                &path(".values"),
                "must be a list of strings",
            ));
        }
    };
    LabelRequirement::new(key, operator, values)
}

fn malformed_selector(field: &str, reason: &'static str) -> SelectorError {
    SelectorError::MalformedLabelSelector {
        field: field.to_owned(),
        reason,
    }
}

fn check_value_count(
    key: &str,
    operator: LabelOperator,
    values: &[String],
) -> Result<(), SelectorError> {
    let reason = match operator {
        LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals
            if values.len() != 1 =>
        {
            Some("exact-match compatibility requires one single value")
        }
        LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        LabelOperator::GreaterThan | LabelOperator::LessThan if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        LabelOperator::GreaterThan | LabelOperator::LessThan
            if values.iter().any(|value| value.parse::<i64>().is_err()) =>
        {
            Some("for 'Gt', 'Lt' operators, the value must be an integer")
        }
        _ => None,
    };
    match reason {
        Some(reason) => Err(SelectorError::InvalidValues {
            key: key.to_owned(),
            values: values.to_vec(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let problems = is_qualified_name(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidLabelKey {
            key: key.to_owned(),
            reason: problems.join("; "),
        })
    }
}

fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let problems = is_label_value(value);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidLabelValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: problems.join("; "),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    // Keywords `in`/`notin` stay identifiers here: apimachinery only treats them as operators in
    // operator position, so `in=x` and `a in (in, notin)` are valid.
    Identifier(&'a str),
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    End,
}

impl Token<'_> {
    fn describe(self) -> String {
        let symbol = match self {
            Token::Identifier(text) => return format!("'{text}'"),
            Token::End => return "end of string".to_owned(),
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
        };
        format!("'{symbol}'")
    }

    fn unexpected(self, expected: &'static str) -> SelectorError {
        SelectorError::UnexpectedToken {
            found: self.describe(),
            expected,
        }
    }
}

// The same whitespace set as apimachinery's lexer; other Unicode spaces end up in identifiers
// and are then rejected by key/value validation.
fn is_selector_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

// Cannot fail: every special character on its own is a token, and anything else is identifier text.
fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_selector_whitespace);
        let Some(first) = rest.chars().next() else {
            return tokens;
        };
        let (token, length) = match first {
            '(' => (Token::OpenParen, 1),
            ')' => (Token::CloseParen, 1),
            ',' => (Token::Comma, 1),
            '>' => (Token::GreaterThan, 1),
            '<' => (Token::LessThan, 1),
            '!' if rest.starts_with("!=") => (Token::NotEquals, 2),
            '!' => (Token::Bang, 1),
            '=' if rest.starts_with("==") => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            _ => {
                let end = rest
                    .find(|c| is_special_symbol(c) || is_selector_whitespace(c))
                    .unwrap_or(rest.len());
                let (identifier, _) = rest.split_at(end);
                (Token::Identifier(identifier), end)
            }
        };
        tokens.push(token);
        rest = rest.get(length..).unwrap_or_default();
    }
}

struct LabelParser<'a> {
    tokens: Vec<Token<'a>>,
    position: usize,
}

impl<'a> LabelParser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens
            .get(self.position)
            .copied()
            .unwrap_or(Token::End)
    }

    fn next(&mut self) -> Token<'a> {
        let token = self.peek();
        self.position += 1;
        token
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let negated = self.peek() == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Identifier(key) => key,
            other => return Err(other.unexpected("identifier")),
        };
        validate_label_key(key)?;
        // `!key` takes no operator; anything after it is reported by the caller as a missing ','.
        if negated {
            return LabelRequirement::new(key, LabelOperator::DoesNotExist, Vec::<String>::new());
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            return LabelRequirement::new(key, LabelOperator::Exists, Vec::<String>::new());
        }
        let operator = match self.next() {
            Token::Identifier("in") => LabelOperator::In,
            Token::Identifier("notin") => LabelOperator::NotIn,
            Token::Equals => LabelOperator::Equals,
            Token::DoubleEquals => LabelOperator::DoubleEquals,
            Token::NotEquals => LabelOperator::NotEquals,
            Token::GreaterThan => LabelOperator::GreaterThan,
            Token::LessThan => LabelOperator::LessThan,
            other => return Err(other.unexpected("'=', '==', '!=', 'in', 'notin', '>' or '<'")),
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        LabelRequirement::new(key, operator, values)
    }

    fn exact_value(&mut self) -> Result<&'a str, SelectorError> {
        // `key=` (nothing before ',' or the end) means the empty value, as in apimachinery.
        match self.peek() {
            Token::End | Token::Comma => Ok(""),
            Token::Identifier(value) => {
                self.next();
                Ok(value)
            }
            other => Err(other.unexpected("identifier")),
        }
    }

    fn value_set(&mut self) -> Result<Vec<&'a str>, SelectorError> {
        match self.next() {
            Token::OpenParen => {}
            other => return Err(other.unexpected("'('")),
        }
        // `()` is an empty set, which requirement validation rejects with a clear message.
        if self.peek() == Token::CloseParen {
            self.next();
            return Ok(Vec::new());
        }
        // An empty slot between commas, or before/after one, is the empty value, as in
        // apimachinery: `(a,)` is {"", "a"}.
        let mut values = Vec::new();
        loop {
            let had_identifier = if let Token::Identifier(value) = self.peek() {
                self.next();
                values.push(value);
                true
            } else {
                values.push("");
                false
            };
            match self.next() {
                Token::Comma => {}
                Token::CloseParen => return Ok(values),
                other if had_identifier => return Err(other.unexpected("',' or ')'")),
                other => return Err(other.unexpected("identifier, ',' or ')'")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// How a field selector term compares a field against its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field<op>value` term of a field selector, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The dotted field path, e.g. `spec.nodeName`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The comparison this term makes.
    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value compared against, with escapes removed.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a field holding `actual` satisfies this term.
    pub fn matches_value(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(
            f,
            "{}{operator}{}",
            self.field,
            escape_field_value(&self.value)
        )
    }
}

/// A conjunction of field terms; with none it matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The terms, in canonical (sorted) order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The field paths the selector uses, once per term.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether the selector has no terms and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an `=` term pins `field` to, if any (lets callers narrow a listing by name).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.operator == FieldOperator::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Fails with `field label not supported: X` for the first field not in `supported`.
    pub fn check_supported(&self, supported: &[&str]) -> Result<(), SelectorError> {
        match self.fields().find(|field| !supported.contains(field)) {
            Some(field) => Err(SelectorError::UnsupportedField {
                field: field.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the JSON object satisfies every term, reading fields with [`field_value`].
    pub fn matches(&self, object: &Value) -> bool {
        self.matches_with(|field| field_value(object, field))
    }

    /// Whether every term holds, reading fields through `get` (for per-resource defaults/aliases).
    pub fn matches_with<'v, F>(&self, mut get: F) -> bool
    where
        F: FnMut(&str) -> Cow<'v, str>,
    {
        self.requirements
            .iter()
            .all(|r| r.matches_value(&get(&r.field)))
    }
}

/// `nodeFieldSelectorAsSelector`: a node affinity term's `matchFields` as a field selector;
/// each requirement is `In` or `NotIn` with exactly one value.
pub fn node_selector_fields(
    requirements: &[NodeSelectorRequirement],
) -> Result<FieldSelector, SelectorError> {
    let requirements = requirements
        .iter()
        .map(|requirement| {
            let operator = match requirement.operator.as_str() {
                "In" => FieldOperator::Equals,
                "NotIn" => FieldOperator::NotEquals,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        operator: other.to_owned(),
                    });
                }
            };
            match requirement.values.as_deref() {
                Some([value]) => Ok(FieldRequirement {
                    field: requirement.key.clone(),
                    operator,
                    value: value.clone(),
                }),
                values => Err(SelectorError::InvalidValues {
                    key: requirement.key.clone(),
                    values: values.unwrap_or_default().to_vec(),
                    reason: "a node field selector needs exactly one value",
                }),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(FieldSelector { requirements })
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_comma_separated(f, &self.requirements)
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_field_selector(text)
    }
}

/// Parses a `?fieldSelector=` string; the empty string matches everything.
pub fn parse_field_selector(text: &str) -> Result<FieldSelector, SelectorError> {
    let mut terms = split_field_terms(text);
    // apimachinery sorts the raw terms, which fixes both the canonical order and which bad term
    // gets reported first.
    terms.sort_unstable();
    let mut requirements = Vec::with_capacity(terms.len());
    for term in terms {
        // Empty terms (`a=b,,c=d`, a trailing comma) are skipped, as in apimachinery.
        if term.is_empty() {
            continue;
        }
        let malformed = |reason| SelectorError::MalformedFieldTerm {
            selector: text.to_owned(),
            term: term.to_owned(),
            reason,
        };
        let Some((field, operator, raw_value)) = split_field_term(term) else {
            return Err(malformed(
                "expected <field>=<value>, <field>==<value> or <field>!=<value>",
            ));
        };
        if field.is_empty() {
            return Err(malformed("the field name is empty"));
        }
        requirements.push(FieldRequirement {
            field: field.to_owned(),
            operator,
            value: unescape_field_value(raw_value)?,
        });
    }
    Ok(FieldSelector { requirements })
}

/// The string form of the field at dotted `path` in `object`, as field selectors compare it:
/// missing or null is "", strings are themselves, other values are their JSON text (`true`, `3`).
pub fn field_value<'a>(object: &'a Value, path: &str) -> Cow<'a, str> {
    let found = path
        .split('.')
        .try_fold(object, |current, segment| current.get(segment));
    match found {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

// Splits on commas not preceded by a backslash; escapes stay in place for unescaping later.
fn split_field_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_escape = false;
    for (index, c) in text.char_indices() {
        if in_escape {
            in_escape = false;
        } else if c == '\\' {
            in_escape = true;
        } else if c == ',' {
            terms.push(text.get(start..index).unwrap_or_default());
            start = index + 1;
        }
    }
    terms.push(text.get(start..).unwrap_or_default());
    terms
}

// The first operator occurrence wins, and the field name takes no escapes, exactly as in
// apimachinery's splitTerm; `==` is tried before `=` so it does not leave '=' in the value.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    term.char_indices().find_map(|(index, _)| {
        let (field, rest) = term.split_at(index);
        OPERATORS.iter().find_map(|(symbol, operator)| {
            rest.strip_prefix(symbol)
                .map(|value| (field, *operator, value))
        })
    })
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
                other => {
                    return Err(SelectorError::InvalidEscapeSequence {
                        value: raw.to_owned(),
                        sequence: other.map_or_else(|| "\\".to_owned(), |c| format!("\\{c}")),
                    });
                }
            },
            ',' | '=' => {
                return Err(SelectorError::UnescapedCharacter {
                    value: raw.to_owned(),
                    character: c,
                });
            }
            _ => value.push(c),
        }
    }
    Ok(value)
}

fn escape_field_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests;
