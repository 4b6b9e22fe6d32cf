//! Label and field selectors as kube-apiserver understands them: `?labelSelector=`,
//! `?fieldSelector=` and metav1.LabelSelector objects inside specs. The grammar, validation and
//! matching follow k8s.io/apimachinery/pkg/labels and pkg/fields, so kubectl and client-go get the
//! same accept/reject decisions and the same matches as against a real cluster.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

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
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.key);
        let listed = |value: &String| self.values.binary_search(value).is_ok();
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
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
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
    let operator = match operator {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        other => {
            return Err(SelectorError::UnknownOperator {
                operator: other.to_owned(),
            });
        }
    };
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

const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const DNS1123_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
     'MyValue', or 'my_value', or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let problems = qualified_name_problems(key);
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
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {LABEL_VALUE_MAX_LENGTH} characters"
        ));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        problems.push(LABEL_VALUE_RULE.to_owned());
    }
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

// Mirrors validation.IsQualifiedName, which collects every problem rather than stopping at one.
fn qualified_name_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_owned());
            } else {
                problems.extend(
                    dns1123_subdomain_problems(prefix)
                        .into_iter()
                        .map(|problem| format!("prefix part {problem}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix \
                 and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LENGTH {
            problems.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX_LENGTH} characters"
            ));
        }
        if !is_qualified_name_part(name) {
            problems.push(format!("name part {QUALIFIED_NAME_RULE}"));
        }
    }
    problems
}

fn dns1123_subdomain_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        problems.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"
        ));
    }
    let label_ok = |label: &str| {
        label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && starts_and_ends_alphanumeric(label)
    };
    if !value.split('.').all(label_ok) {
        problems.push(DNS1123_SUBDOMAIN_RULE.to_owned());
    }
    problems
}

// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: the shape of label names and non-empty values.
fn is_qualified_name_part(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && starts_and_ends_alphanumeric(value)
}

// False for the empty string, which is what every caller's regex demands.
fn starts_and_ends_alphanumeric(value: &str) -> bool {
    let bytes = value.as_bytes();
    matches!(
        (bytes.first(), bytes.last()),
        (Some(first), Some(last)) if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    )
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

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
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
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(text: &str) -> LabelSelector {
        parse_label_selector(text).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse_label_selector(text).unwrap_err().to_string()
    }

    fn single(text: &str) -> LabelRequirement {
        let selector = parse(text);
        assert_eq!(selector.requirements().len(), 1, "{text}");
        selector.requirements()[0].clone()
    }

    // ---- label selector parsing ----

    #[test]
    fn empty_and_blank_selectors_match_everything() {
        for text in ["", "   ", "\t\n"] {
            let selector = parse(text);
            assert!(selector.is_empty());
            assert!(selector.matches(&labels(&[])));
            assert!(selector.matches(&labels(&[("a", "b")])));
            assert_eq!(selector.to_string(), "");
        }
        assert_eq!(LabelSelector::everything(), parse(""));
    }

    #[test]
    fn parses_every_operator() {
        let cases: &[(&str, LabelOperator, &[&str])] = &[
            ("a=b", LabelOperator::Equals, &["b"]),
            ("a==b", LabelOperator::DoubleEquals, &["b"]),
            ("a!=b", LabelOperator::NotEquals, &["b"]),
            ("a in (b,c)", LabelOperator::In, &["b", "c"]),
            ("a notin (c, b)", LabelOperator::NotIn, &["b", "c"]),
            ("a", LabelOperator::Exists, &[]),
            ("!a", LabelOperator::DoesNotExist, &[]),
            ("a>5", LabelOperator::GreaterThan, &["5"]),
            ("a<10", LabelOperator::LessThan, &["10"]),
        ];
        for (text, operator, values) in cases {
            let requirement = single(text);
            assert_eq!(requirement.key(), "a", "{text}");
            assert_eq!(requirement.operator(), *operator, "{text}");
            assert_eq!(requirement.values(), *values, "{text}");
        }
    }

    #[test]
    fn whitespace_around_tokens_is_ignored() {
        let selector = parse("  a = b ,  c in ( x , y ) ,\t! d , e != f , g>1 ,h == i , j  ");
        assert_eq!(selector.to_string(), "a=b,c in (x,y),!d,e!=f,g>1,h==i,j");
        assert_eq!(parse("a in(x)").to_string(), "a in (x)");
        assert_eq!(parse("!a,b").to_string(), "!a,b");
    }

    #[test]
    fn set_based_example_from_the_docs() {
        let selector = parse("environment in (production, qa),tier in (frontend)");
        assert_eq!(selector.requirements().len(), 2);
        assert_eq!(selector.requirements()[0].values(), ["production", "qa"]);
        assert_eq!(selector.requirements()[1].values(), ["frontend"]);
        assert_eq!(
            selector.to_string(),
            "environment in (production,qa),tier in (frontend)"
        );
        assert!(selector.matches(&labels(&[("environment", "qa"), ("tier", "frontend")])));
        assert!(selector.matches(&labels(&[
            ("environment", "production"),
            ("tier", "frontend"),
            ("extra", "x"),
        ])));
        assert!(!selector.matches(&labels(&[("environment", "dev"), ("tier", "frontend")])));
        assert!(!selector.matches(&labels(&[("environment", "qa"), ("tier", "backend")])));
        assert!(!selector.matches(&labels(&[("environment", "qa")])));
        assert!(!selector.matches(&labels(&[])));
    }

    #[test]
    fn requirements_are_sorted_by_key_and_values_deduplicated() {
        let selector = parse("b=1,a in (z,y,y,z),c");
        assert_eq!(selector.to_string(), "a in (y,z),b=1,c");
        assert_eq!(selector.requirements()[0].values(), ["y", "z"]);
    }

    #[test]
    fn empty_values_are_allowed_where_apimachinery_allows_them() {
        assert_eq!(single("a=").values(), [""]);
        assert_eq!(single("a==").values(), [""]);
        assert_eq!(single("a!=").values(), [""]);
        assert_eq!(parse("a=,b").requirements()[0].values(), [""]);
        assert_eq!(single("a in (,x)").values(), ["", "x"]);
        assert_eq!(single("a in (x,)").values(), ["", "x"]);
        assert_eq!(single("a in (x,,y)").values(), ["", "x", "y"]);
        assert_eq!(single("a in (,)").values(), [""]);
        let selector = parse("a=");
        assert!(selector.matches(&labels(&[("a", "")])));
        assert!(!selector.matches(&labels(&[("a", "x")])));
        assert!(!selector.matches(&labels(&[])));
    }

    #[test]
    fn keywords_are_plain_identifiers_outside_operator_position() {
        assert_eq!(single("a=in").values(), ["in"]);
        assert_eq!(single("a in (in, notin)").values(), ["in", "notin"]);
        assert_eq!(single("in").operator(), LabelOperator::Exists);
        assert_eq!(single("in").key(), "in");
        assert_eq!(single("notin=x").key(), "notin");
        assert_eq!(single("!in").operator(), LabelOperator::DoesNotExist);
    }

    #[test]
    fn prefixed_keys_and_valid_characters() {
        let requirement = single("app.kubernetes.io/name=my_app-1.0");
        assert_eq!(requirement.key(), "app.kubernetes.io/name");
        assert_eq!(requirement.values(), ["my_app-1.0"]);
        single("Upper_Case.name=Value");
        single(&format!("{}=v", "k".repeat(63)));
        single(&format!("a={}", "v".repeat(63)));
        single(&format!("{}.com/k", "p".repeat(249)));
    }

    #[test]
    fn invalid_keys_are_rejected_with_the_key_named() {
        let cases: &[(&str, &str)] = &[
            ("-bad", "name part must consist of alphanumeric characters"),
            ("bad_", "name part must consist"),
            ("example.com/", "name part must be non-empty"),
            ("/name", "prefix part must be non-empty"),
            (
                "Example.com/name",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "ex_ample.com/name",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            ("a/b/c", "a qualified name must consist"),
            ("é", "name part must consist"),
        ];
        for (key, reason) in cases {
            let message = parse_err(key);
            assert!(
                message.starts_with(&format!(
                    "unable to parse requirement: invalid label key {key:?}: "
                )),
                "{message}"
            );
            assert!(message.contains(reason), "{message}");
        }
        let long_name = "k".repeat(64);
        assert!(parse_err(&long_name).contains("name part must be no more than 63 characters"));
        let long_prefix = format!("{}.com/k", "p".repeat(250));
        assert!(
            parse_err(&long_prefix).contains("prefix part must be no more than 253 characters")
        );
        let error = parse_label_selector("a=b,-x=y").unwrap_err();
        assert!(matches!(
            &error,
            SelectorError::InvalidRequirement(inner)
                if matches!(inner.as_ref(), SelectorError::InvalidLabelKey { key, .. } if key == "-x")
        ));
    }

    #[test]
    fn invalid_values_are_rejected_with_the_value_named() {
        let message = parse_err("a=-bad");
        assert!(
            message.starts_with(r#"unable to parse requirement: invalid label value "-bad" for key "a": a valid label must be"#),
            "{message}"
        );
        assert!(parse_err("a in (ok, bad_)").contains(r#"invalid label value "bad_""#));
        let long = "v".repeat(64);
        assert!(parse_err(&format!("a!={long}")).contains("must be no more than 63 characters"));
        assert!(parse_err("a=b.c/d").contains(r#"invalid label value "b.c/d""#));
    }

    #[test]
    fn empty_in_set_is_an_error() {
        for text in ["a in ()", "a notin ( )"] {
            let message = parse_err(text);
            assert!(
                message.contains("values set can't be empty") && message.contains(r#"key "a""#),
                "{message}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_offending_token() {
        let cases: &[(&str, &str)] = &[
            (
                "a=(b)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b', expected: '('",
            ),
            ("a in (b c)", "found 'c', expected: ',' or ')'"),
            ("a in (b", "found end of string, expected: ',' or ')'"),
            ("a in (=)", "found '=', expected: identifier, ',' or ')'"),
            ("a in", "found end of string, expected: '('"),
            (
                ",a",
                "found ',', expected: '!', identifier, or end of string",
            ),
            ("a,", "found end of string, expected: identifier after ','"),
            ("a,,b", "found ',', expected: identifier after ','"),
            (
                "a b",
                "found 'b', expected: '=', '==', '!=', 'in', 'notin', '>' or '<'",
            ),
            ("a=b c", "found 'c', expected: ',' or end of string"),
            ("a=b=c", "found '=', expected: ',' or end of string"),
            ("!a=b", "found '=', expected: ',' or end of string"),
            (
                "!",
                "unable to parse requirement: found end of string, expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: '!', identifier, or end of string",
            ),
            (
                "a!b",
                "found '!', expected: '=', '==', '!=', 'in', 'notin', '>' or '<'",
            ),
            ("a<=5", "found '=', expected: identifier"),
            (
                "(a)",
                "found '(', expected: '!', identifier, or end of string",
            ),
        ];
        for (text, expected) in cases {
            let message = parse_err(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn numeric_comparisons_need_an_integer() {
        for text in ["a>x", "a>", "a<1.5", "a>-1", "a<+1"] {
            let message = parse_err(text);
            assert!(
                message.starts_with("unable to parse requirement: "),
                "{message}"
            );
            assert!(
                message.contains("must be an integer") || message.contains("invalid label value"),
                "{text}: {message}"
            );
        }
        assert!(
            parse_err("a>x").contains("for 'Gt', 'Lt' operators, the value must be an integer")
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "a=b",
            "a==b",
            "a!=b",
            "a in (b,c)",
            "a notin (b,c)",
            "a",
            "!a",
            "a>1",
            "a<2",
            "a=",
            "a in (,b)",
            "example.com/a=b,in,x notin (in)",
        ] {
            let selector = parse(text);
            assert_eq!(parse(&selector.to_string()), selector, "{text}");
        }
        assert_eq!(
            "x=1,a".parse::<LabelSelector>().unwrap().to_string(),
            "a,x=1"
        );
    }

    // ---- label selector matching ----

    #[test]
    fn matching_truth_table() {
        let absent = labels(&[("other", "x")]);
        let equal = labels(&[("a", "b")]);
        let different = labels(&[("a", "z")]);
        // (selector, matches absent, matches a=b, matches a=z)
        let cases: &[(&str, bool, bool, bool)] = &[
            ("a=b", false, true, false),
            ("a==b", false, true, false),
            ("a!=b", true, false, true),
            ("a in (b,c)", false, true, false),
            ("a notin (b,c)", true, false, true),
            ("a", false, true, true),
            ("!a", true, false, false),
            ("a=b,other", false, false, false),
            ("a!=b,!other", false, false, true),
        ];
        for (text, on_absent, on_equal, on_different) in cases {
            let selector = parse(text);
            assert_eq!(selector.matches(&absent), *on_absent, "{text} on absent");
            assert_eq!(selector.matches(&equal), *on_equal, "{text} on a=b");
            assert_eq!(selector.matches(&different), *on_different, "{text} on a=z");
        }
    }

    #[test]
    fn numeric_matching() {
        let gt = parse("a>5");
        let lt = parse("a<5");
        assert!(gt.matches(&labels(&[("a", "6")])));
        assert!(!gt.matches(&labels(&[("a", "5")])));
        assert!(!gt.matches(&labels(&[("a", "4")])));
        assert!(lt.matches(&labels(&[("a", "4")])));
        assert!(!lt.matches(&labels(&[("a", "5")])));
        assert!(lt.matches(&labels(&[("a", "-3")])));
        for selector in [&gt, &lt] {
            assert!(!selector.matches(&labels(&[])));
            assert!(!selector.matches(&labels(&[("a", "x")])));
            assert!(!selector.matches(&labels(&[("a", "")])));
            assert!(!selector.matches(&labels(&[("a", "99999999999999999999")])));
        }
    }

    #[test]
    fn requirement_new_validates_like_apimachinery() {
        let requirement =
            LabelRequirement::new("tier", LabelOperator::In, ["b", "a", "b"]).unwrap();
        assert_eq!(requirement.values(), ["a", "b"]);
        assert_eq!(requirement.to_string(), "tier in (a,b)");
        assert!(LabelRequirement::new("a", LabelOperator::Equals, ["x", "y"]).is_err());
        assert!(
            LabelRequirement::new("a", LabelOperator::NotEquals, Vec::<String>::new()).is_err()
        );
        assert!(LabelRequirement::new("a", LabelOperator::Exists, ["x"]).is_err());
        assert!(LabelRequirement::new("a", LabelOperator::GreaterThan, ["1", "2"]).is_err());
        assert!(
            LabelRequirement::new("bad key", LabelOperator::Exists, Vec::<String>::new()).is_err()
        );
        let selector = LabelSelector::from_requirements(vec![
            LabelRequirement::new("z", LabelOperator::Exists, Vec::<String>::new()).unwrap(),
            requirement,
        ]);
        assert_eq!(selector.to_string(), "tier in (a,b),z");
    }

    // ---- metav1.LabelSelector ----

    #[test]
    fn json_null_and_missing_select_nothing() {
        assert_eq!(label_selector_from_json(None).unwrap(), None);
        assert_eq!(label_selector_from_json(Some(&Value::Null)).unwrap(), None);
    }

    #[test]
    fn json_empty_selects_everything() {
        for selector in [
            json!({}),
            json!({"matchLabels": {}}),
            json!({"matchLabels": null, "matchExpressions": []}),
        ] {
            let selector = label_selector_from_json(Some(&selector)).unwrap().unwrap();
            assert!(selector.is_empty());
            assert!(selector.matches(&labels(&[])));
        }
    }

    #[test]
    fn json_selector_converts_and_matches() {
        let selector = label_selector_from_json(Some(&json!({
            "matchLabels": {"app": "web", "tier": "frontend"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "qa"]},
                {"key": "track", "operator": "NotIn", "values": ["canary"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ],
            "unknownField": true,
        })))
        .unwrap()
        .unwrap();
        assert_eq!(
            selector.to_string(),
            "app=web,env in (prod,qa),!legacy,owner,tier=frontend,track notin (canary)"
        );
        let mut set = labels(&[
            ("app", "web"),
            ("tier", "frontend"),
            ("env", "qa"),
            ("owner", "me"),
        ]);
        assert!(selector.matches(&set));
        set.insert("track".into(), "stable".into());
        assert!(selector.matches(&set));
        set.insert("track".into(), "canary".into());
        assert!(!selector.matches(&set));
        set.remove("track");
        set.insert("legacy".into(), "yes".into());
        assert!(!selector.matches(&set));
        set.remove("legacy");
        set.remove("owner");
        assert!(!selector.matches(&set));
    }

    #[test]
    fn json_selector_errors() {
        let error = |value: Value| label_selector_from_json(Some(&value)).unwrap_err();
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn"}]}),
                "values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}),
                "values set must be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                r#""Equals" is not a valid label selector operator"#,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
                r#""in" is not a valid label selector operator"#,
            ),
            (
                json!({"matchLabels": {"Bad Key": "x"}}),
                r#"invalid label key "Bad Key": name part must consist"#,
            ),
            (
                json!({"matchLabels": {"a": "bad value"}}),
                r#"invalid label value "bad value" for key "a""#,
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                r#"invalid label selector: matchLabels["a"]: must be a string"#,
            ),
            (
                json!({"matchLabels": []}),
                "invalid label selector: matchLabels: must be an object",
            ),
            (
                json!({"matchExpressions": {}}),
                "invalid label selector: matchExpressions: must be a list",
            ),
            (
                json!({"matchExpressions": ["a"]}),
                "invalid label selector: matchExpressions[0]: must be an object",
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "invalid label selector: matchExpressions[0].key: must be a string",
            ),
            (
                json!({"matchExpressions": [{"key": "a"}]}),
                "invalid label selector: matchExpressions[0].operator: must be a string",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
                "invalid label selector: matchExpressions[0].values: must be a list of strings",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
                "matchExpressions[0].values: must be a list of strings",
            ),
            (
                json!("app=web"),
                "invalid label selector: selector: must be a JSON object or null",
            ),
        ];
        for (value, expected) in cases {
            let message = error(value.clone()).to_string();
            assert!(message.contains(expected), "{value}: {message}");
        }
        assert!(matches!(
            error(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            SelectorError::UnknownOperator { operator } if operator == "Gt"
        ));
    }

    #[test]
    fn labels_of_reads_metadata_labels() {
        let object = json!({"metadata": {"name": "x", "labels": {"a": "b", "n": 1, "c": ""}}});
        assert_eq!(labels_of(&object), labels(&[("a", "b"), ("c", "")]));
        assert!(labels_of(&json!({"metadata": {"name": "x"}})).is_empty());
        assert!(labels_of(&json!({"metadata": {"labels": null}})).is_empty());
        assert!(labels_of(&json!({})).is_empty());
        assert!(labels_of(&json!([1])).is_empty());
        assert!(parse("a=b").matches(&labels_of(&object)));
    }

    // ---- field selectors ----

    fn fields(text: &str) -> FieldSelector {
        parse_field_selector(text).unwrap()
    }

    fn field_err(text: &str) -> SelectorError {
        parse_field_selector(text).unwrap_err()
    }

    #[test]
    fn empty_field_selector_matches_everything() {
        let selector = fields("");
        assert!(selector.is_empty());
        assert!(selector.matches(&json!({})));
        assert_eq!(selector.fields().count(), 0);
        assert_eq!(selector, FieldSelector::everything());
        assert!(fields(",").is_empty());
    }

    #[test]
    fn parses_field_operators() {
        let selector = fields("metadata.name=foo,status.phase!=Running,spec.nodeName==node-1");
        let terms: Vec<(&str, FieldOperator, &str)> = selector
            .requirements()
            .iter()
            .map(|r| (r.field(), r.operator(), r.value()))
            .collect();
        assert_eq!(
            terms,
            [
                ("metadata.name", FieldOperator::Equals, "foo"),
                ("spec.nodeName", FieldOperator::Equals, "node-1"),
                ("status.phase", FieldOperator::NotEquals, "Running"),
            ]
        );
        assert_eq!(
            selector.fields().collect::<Vec<_>>(),
            ["metadata.name", "spec.nodeName", "status.phase"]
        );
        assert_eq!(
            selector.to_string(),
            "metadata.name=foo,spec.nodeName=node-1,status.phase!=Running"
        );
        assert_eq!(fields("a=").requirements()[0].value(), "");
        assert_eq!(
            fields("a!=").requirements()[0].operator(),
            FieldOperator::NotEquals
        );
        assert_eq!(fields("a=b,,c=d,").requirements().len(), 2);
        assert_eq!(
            fields("a=hello world").requirements()[0].value(),
            "hello world"
        );
    }

    #[test]
    fn field_values_unescape_and_display_escapes() {
        let selector = fields(r"a=x\,y\=z\\w,b=2");
        assert_eq!(selector.requirements().len(), 2);
        assert_eq!(selector.requirements()[0].value(), r"x,y=z\w");
        assert_eq!(selector.to_string(), r"a=x\,y\=z\\w,b=2");
        assert_eq!(fields(&selector.to_string()), selector);
        assert_eq!(fields(r"a!=\\").requirements()[0].value(), r"\");
        assert_eq!(fields(r"a=\,").requirements()[0].value(), ",");
        assert_eq!("x==1".parse::<FieldSelector>().unwrap().to_string(), "x=1");
    }

    #[test]
    fn field_selector_errors() {
        assert!(matches!(
            field_err("a=b=c"),
            SelectorError::UnescapedCharacter { value, character: '=' } if value == "b=c"
        ));
        assert!(matches!(
            field_err("a==="),
            SelectorError::UnescapedCharacter { character: '=', .. }
        ));
        assert!(matches!(
            field_err(r"a=b\"),
            SelectorError::InvalidEscapeSequence { sequence, .. } if sequence == r"\"
        ));
        assert!(matches!(
            field_err(r"a=b\x"),
            SelectorError::InvalidEscapeSequence { sequence, .. } if sequence == r"\x"
        ));
        assert!(matches!(
            field_err("metadata.name"),
            SelectorError::MalformedFieldTerm { term, .. } if term == "metadata.name"
        ));
        assert!(matches!(
            field_err("a=b,=c"),
            SelectorError::MalformedFieldTerm { term, reason, .. }
                if term == "=c" && reason.contains("field name is empty")
        ));
        assert_eq!(
            field_err("x=1,foo").to_string(),
            r#"invalid field selector "x=1,foo": can't understand "foo": expected <field>=<value>, <field>==<value> or <field>!=<value>"#
        );
        assert_eq!(
            field_err(r"a=b\q").to_string(),
            r#"invalid field selector value "b\\q": invalid escape sequence '\q' (only \\, \, and \= are allowed)"#
        );
        assert_eq!(
            field_err("a=b=c").to_string(),
            r#"invalid field selector value "b=c": unescaped character '=' (write it as '\=')"#
        );
    }

    #[test]
    fn field_matching_with_missing_fields_and_not_equals() {
        let scheduled = json!({
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "node-1", "hostNetwork": true, "priority": 7},
            "status": {"phase": "Running"},
        });
        let pending = json!({
            "metadata": {"name": "p2", "namespace": "default"},
            "spec": {},
            "status": {"phase": "Pending"},
        });
        let cases: &[(&str, bool, bool)] = &[
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("spec.nodeName=node-1", true, false),
            ("spec.nodeName!=node-1", false, true),
            ("status.phase=Running", true, false),
            ("status.phase!=Running", false, true),
            ("metadata.name=p2,metadata.namespace=default", false, true),
            (
                "metadata.namespace=default,status.phase!=Failed",
                true,
                true,
            ),
            ("spec.hostNetwork=true", true, false),
            ("spec.priority=7", true, false),
            ("spec.priority==7", true, false),
            ("metadata.name.deeper=", true, true),
            ("no.such.field=x", false, false),
        ];
        for (text, on_scheduled, on_pending) in cases {
            let selector = fields(text);
            assert_eq!(
                selector.matches(&scheduled),
                *on_scheduled,
                "{text} on scheduled"
            );
            assert_eq!(selector.matches(&pending), *on_pending, "{text} on pending");
        }
    }

    #[test]
    fn field_value_lookup() {
        let event = json!({
            "involvedObject": {"kind": "Pod", "name": "p"},
            "count": 3,
            "ratio": 1.5,
            "flag": false,
            "gone": null,
            "list": ["a"],
        });
        assert_eq!(field_value(&event, "involvedObject.kind"), "Pod");
        assert_eq!(field_value(&event, "count"), "3");
        assert_eq!(field_value(&event, "ratio"), "1.5");
        assert_eq!(field_value(&event, "flag"), "false");
        assert_eq!(field_value(&event, "gone"), "");
        assert_eq!(field_value(&event, "missing"), "");
        assert_eq!(field_value(&event, "involvedObject.missing"), "");
        assert_eq!(field_value(&event, "list"), r#"["a"]"#);
        assert!(fields("involvedObject.kind=Pod,involvedObject.name=p").matches(&event));
        assert!(!fields("involvedObject.kind=Node").matches(&event));
    }

    #[test]
    fn check_supported_names_the_field() {
        let selector = fields("metadata.name=a,spec.foo=b");
        assert!(
            selector
                .check_supported(&["metadata.name", "spec.foo"])
                .is_ok()
        );
        let error = selector.check_supported(&["metadata.name"]).unwrap_err();
        assert_eq!(error.to_string(), "field label not supported: spec.foo");
        assert!(fields("").check_supported(&[]).is_ok());
        assert_eq!(
            fields("status.phase =x")
                .check_supported(&["status.phase"])
                .unwrap_err(),
            SelectorError::UnsupportedField {
                field: "status.phase ".into()
            }
        );
    }

    #[test]
    fn exact_match_and_custom_getter() {
        let selector = fields("metadata.name=web,metadata.namespace!=kube-system");
        assert_eq!(selector.requires_exact_match("metadata.name"), Some("web"));
        assert_eq!(selector.requires_exact_match("metadata.namespace"), None);
        assert_eq!(selector.requires_exact_match("spec.nodeName"), None);
        let node = fields("spec.unschedulable=false");
        let object = json!({"spec": {}});
        assert!(!node.matches(&object));
        // Callers supply per-resource defaults (a missing bool reads "false" in Kubernetes).
        assert!(node.matches_with(|field| {
            let value = field_value(&object, field);
            if field == "spec.unschedulable" && value.is_empty() {
                Cow::Borrowed("false")
            } else {
                value
            }
        }));
    }
}
