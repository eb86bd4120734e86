//! The request fields that constrain a completion's text: OpenAI's
//! `response_format` (`text`, `json_object`, `json_schema`) and vLLM's
//! extensions (`structured_outputs: {json | regex | choice | grammar |
//! json_object}` and the older `guided_json`, `guided_regex`,
//! `guided_choice`, `guided_grammar`), as the engine's `OutputConstraint`.
//! At most one may be given; compiling it is the route's job (a schema the
//! engine cannot compile is a 400 naming the cause).

use serde::Deserialize;
use serde_json::Value;

use crate::engine::constraint::OutputConstraint;

use super::error::ApiError;

/// OpenAI's `response_format`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// `response_format.json_schema`. The constraint is always enforced, so
/// `strict` changes nothing; `name` and `description` are the client's.
#[derive(Debug, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schema: Option<Value>,
    pub strict: Option<bool>,
}

/// vLLM's `structured_outputs` (and, field by field, the `guided_*` ones).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructuredOutputs {
    /// A JSON schema: an object, or a string holding one.
    pub json: Option<Value>,
    pub regex: Option<String>,
    pub choice: Option<Vec<String>>,
    pub grammar: Option<String>,
    #[serde(default)]
    pub json_object: bool,
}

/// The constraint fields of a completion request, as they came.
pub struct ConstraintFields<'a> {
    pub response_format: Option<&'a ResponseFormat>,
    pub structured_outputs: Option<&'a StructuredOutputs>,
    pub guided: StructuredOutputs,
}

impl ConstraintFields<'_> {
    /// The one constraint asked for, with the field that asked for it; an
    /// error when two fields ask, or one asks for nothing usable.
    pub fn constraint(self) -> Result<Option<(OutputConstraint, String)>, ApiError> {
        let mut found: Vec<(OutputConstraint, String)> = Vec::new();
        match self.response_format {
            None | Some(ResponseFormat::Text) => {}
            Some(ResponseFormat::JsonObject) => {
                found.push((OutputConstraint::JsonObject, "response_format".into()));
            }
            Some(ResponseFormat::JsonSchema { json_schema }) => {
                let param = "response_format.json_schema.schema";
                let schema = json_schema
                    .schema
                    .clone()
                    .ok_or_else(|| ApiError::invalid(format!("`{param}` is required"), param))?;
                found.push((OutputConstraint::JsonSchema(schema), param.into()));
            }
        }
        if let Some(outputs) = self.structured_outputs {
            found.extend(from_fields(outputs, "structured_outputs.")?);
        }
        found.extend(from_fields(&self.guided, "guided_")?);
        if found.len() > 1 {
            let names: Vec<&str> = found.iter().map(|(_, param)| param.as_str()).collect();
            return Err(ApiError::invalid(
                format!("give one output constraint, not {}", names.join(" and ")),
                names[1],
            ));
        }
        Ok(found.pop())
    }
}

fn from_fields(
    fields: &StructuredOutputs,
    prefix: &str,
) -> Result<Vec<(OutputConstraint, String)>, ApiError> {
    let param = |name: &str| format!("{prefix}{name}");
    let mut found = Vec::new();
    if let Some(json) = &fields.json {
        let schema = match json {
            Value::String(text) => serde_json::from_str(text).map_err(|e| {
                ApiError::invalid(format!("`{}` is not a JSON schema: {e}", param("json")), param("json"))
            })?,
            other => other.clone(),
        };
        found.push((OutputConstraint::JsonSchema(schema), param("json")));
    }
    if let Some(regex) = &fields.regex {
        found.push((OutputConstraint::Regex(regex.clone()), param("regex")));
    }
    if let Some(choice) = &fields.choice {
        if choice.is_empty() {
            return Err(ApiError::invalid(
                format!("`{}` must not be empty", param("choice")),
                param("choice"),
            ));
        }
        found.push((OutputConstraint::Choice(choice.clone()), param("choice")));
    }
    if let Some(grammar) = &fields.grammar {
        found.push((OutputConstraint::Grammar(grammar.clone()), param("grammar")));
    }
    if fields.json_object {
        found.push((OutputConstraint::JsonObject, param("json_object")));
    }
    Ok(found)
}
