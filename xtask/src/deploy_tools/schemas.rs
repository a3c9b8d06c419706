//! JSON schemas for kubeconform, made from what the registries ship: the
//! Kubernetes schemas of the `kubernetes-validate` wheel (their `$ref`s name
//! `https://kubernetes.io/api/...` and are made to point at the file beside
//! them) and the Dapr CRDs' `openAPIV3Schema`s (turned into JSON Schema,
//! with a strict variant that refuses unknown fields as the API server's
//! strict field validation does). Pure file and value work, no tools.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Bumped whenever a conversion here changes, so cached schemas are remade.
pub const RECIPE: u32 = 1;

/// The Kubernetes versions a `kubernetes-json-schema` folder of the wheel
/// holds (`v1.37.0`, ...; from its `v<version>-local-strict` folders), sorted
/// oldest first.
pub fn kubernetes_versions(dir: &Path) -> Result<Vec<String>> {
    let mut versions: Vec<(Vec<u32>, String)> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_suffix("-local-strict")?.to_owned();
            let key = version
                .trim_start_matches('v')
                .split('.')
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            Some((key, version))
        })
        .collect();
    versions.sort();
    Ok(versions.into_iter().map(|(_, v)| v).collect())
}

/// Copies every schema of `from` to `to`, made local (see [`localize`]).
/// Returns how many files were written.
pub fn localize_kubernetes_schemas(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut count = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let mut schema: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        localize(&mut schema).with_context(|| format!("in {}", path.display()))?;
        let name = path.file_name().context("schema file name")?;
        std::fs::write(to.join(name), serde_json::to_vec(&schema)?)?;
        count += 1;
    }
    Ok(count)
}

/// Makes one schema of the wheel resolvable from the folder it is in: drops
/// the root `$id` (a web address every relative `$ref` would resolve
/// against) and turns `/api/_definitions.json#...` into
/// `_definitions.json#...`. Any other non-local `$ref` is an error.
pub fn localize(schema: &mut Value) -> Result<()> {
    if let Some(root) = schema.as_object_mut() {
        root.remove("$id");
    }
    rewrite_refs(schema)
}

fn rewrite_refs(value: &mut Value) -> Result<()> {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(rest) = r.strip_prefix("/api/") {
                            *v = Value::String(rest.to_owned());
                        } else if !r.starts_with('#') {
                            bail!("unexpected $ref {r}");
                        }
                    }
                    _ => rewrite_refs(v)?,
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_refs(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One served version of a CRD as JSON Schemas.
#[derive(Debug)]
pub struct CrdSchema {
    pub group: String,
    pub kind: String,
    pub version: String,
    pub loose: Value,
    pub strict: Value,
}

impl CrdSchema {
    /// The path kubeconform's template
    /// `{{ .Group }}{{ .StrictSuffix }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`
    /// gives for it.
    pub fn file(&self, strict: bool) -> String {
        format!(
            "{}{}/{}_{}.json",
            self.group,
            if strict { "-strict" } else { "" },
            self.kind.to_lowercase(),
            self.version
        )
    }
}

/// Every version of one `CustomResourceDefinition` (as JSON), with
/// `apiVersion` and `kind` pinned to that version's values.
pub fn crd_schemas(crd: &Value) -> Result<Vec<CrdSchema>> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().context("CRD without spec.group")?;
    let kind = spec["names"]["kind"]
        .as_str()
        .context("CRD without spec.names.kind")?;
    let versions = spec["versions"]
        .as_array()
        .context("CRD without spec.versions")?;
    let mut out = Vec::new();
    for v in versions {
        let version = v["name"].as_str().context("CRD version without a name")?;
        let Some(openapi) = v["schema"]["openAPIV3Schema"].as_object() else {
            bail!("{kind} {version} has no openAPIV3Schema");
        };
        let convert = |strict: bool| {
            let mut schema = to_json_schema(&Value::Object(openapi.clone()), strict);
            let properties = schema
                .as_object_mut()
                .and_then(|s| s.get_mut("properties"))
                .and_then(Value::as_object_mut);
            if let Some(properties) = properties {
                properties.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "enum": [format!("{group}/{version}")]}),
                );
                properties.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
            }
            schema
        };
        out.push(CrdSchema {
            group: group.to_owned(),
            kind: kind.to_owned(),
            version: version.to_owned(),
            loose: convert(false),
            strict: convert(true),
        });
    }
    Ok(out)
}

/// An OpenAPI v3 structural schema as JSON Schema: `nullable` becomes a
/// `"null"` type, `x-kubernetes-int-or-string` an integer-or-string, and,
/// when `strict`, an object with `properties` (and no
/// `additionalProperties` or `x-kubernetes-preserve-unknown-fields`) refuses
/// any other field. Other keywords are kept (JSON Schema ignores the
/// `x-kubernetes-*` ones).
pub fn to_json_schema(schema: &Value, strict: bool) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, v) in map {
        let converted = match key.as_str() {
            "properties" | "patternProperties" | "definitions" | "$defs" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), to_json_schema(s, strict)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" => to_json_schema(v, strict),
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(items) => {
                    Value::Array(items.iter().map(|s| to_json_schema(s, strict)).collect())
                }
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if out.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    if out.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    let preserves = out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if strict
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !preserves
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// Converts every CRD in every YAML file of `crds` and writes each version's
/// loose and strict schema under `root` (see [`CrdSchema::file`]). Returns
/// `Kind version` for each.
pub fn write_crd_schemas(crds: &Path, root: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(crds)
        .with_context(|| format!("reading {}", crds.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let crd = Value::deserialize(document)
                .with_context(|| format!("parsing {}", path.display()))?;
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            for schema in crd_schemas(&crd).with_context(|| format!("in {}", path.display()))? {
                for strict in [false, true] {
                    let file = root.join(schema.file(strict));
                    std::fs::create_dir_all(file.parent().context("schema folder")?)?;
                    let value = if strict {
                        &schema.strict
                    } else {
                        &schema.loose
                    };
                    std::fs::write(&file, serde_json::to_vec_pretty(value)?)?;
                }
                written.push(format!("{} {}", schema.kind, schema.version));
            }
        }
    }
    if written.is_empty() {
        bail!("no CustomResourceDefinition in {}", crds.display());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localize_points_refs_at_the_definitions_file_beside_the_schema() {
        let mut schema = json!({
            "$id": "https://kubernetes.io/api/deployment/apps/v1",
            "properties": {
                "spec": {"$ref": "/api/_definitions.json#/$defs/io.k8s.api.apps.v1.DeploymentSpec"},
                "list": {"items": [{"$ref": "#/$defs/x"}]}
            }
        });
        localize(&mut schema).unwrap();
        assert_eq!(
            schema,
            json!({
                "properties": {
                    "spec": {"$ref": "_definitions.json#/$defs/io.k8s.api.apps.v1.DeploymentSpec"},
                    "list": {"items": [{"$ref": "#/$defs/x"}]}
                }
            })
        );
    }

    #[test]
    fn localize_refuses_a_ref_to_anywhere_else() {
        let mut schema = json!({"properties": {"a": {"$ref": "https://example.invalid/x.json"}}});
        assert!(localize(&mut schema).is_err());
    }

    #[test]
    fn strict_objects_refuse_unknown_fields_unless_they_preserve_them() {
        let openapi = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"b": {}}},
                "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"c": {}}}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"d": {}}}}
            }
        });
        let strict = to_json_schema(&openapi, true);
        assert_eq!(strict["additionalProperties"], false);
        assert_eq!(strict["properties"]["spec"]["additionalProperties"], false);
        assert!(
            strict["properties"]["free"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            strict["properties"]["map"]["additionalProperties"]["additionalProperties"],
            false
        );
        assert_eq!(
            strict["properties"]["list"]["items"]["additionalProperties"],
            false
        );
        let loose = to_json_schema(&openapi, false);
        assert!(
            loose["properties"]["spec"]
                .get("additionalProperties")
                .is_none()
        );
    }

    #[test]
    fn nullable_and_int_or_string_become_json_schema_types() {
        let openapi = json!({
            "properties": {
                "n": {"type": "string", "nullable": true},
                "port": {"x-kubernetes-int-or-string": true, "type": "string"}
            }
        });
        let schema = to_json_schema(&openapi, false);
        assert_eq!(
            schema["properties"]["n"],
            json!({"type": ["string", "null"]})
        );
        assert_eq!(
            schema["properties"]["port"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(schema["properties"]["port"].get("type").is_none());
    }

    #[test]
    fn each_crd_version_pins_its_api_version_and_kind() {
        let crd: Value = serde_yaml::from_str(
            r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  group: dapr.io
  names: {kind: Subscription}
  versions:
  - name: v1alpha1
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
  - name: v2alpha1
    schema:
      openAPIV3Schema:
        type: object
        properties:
          kind: {type: string}
",
        )
        .unwrap();
        let schemas = crd_schemas(&crd).unwrap();
        assert_eq!(schemas.len(), 2);
        assert_eq!(schemas[0].file(false), "dapr.io/subscription_v1alpha1.json");
        assert_eq!(
            schemas[1].file(true),
            "dapr.io-strict/subscription_v2alpha1.json"
        );
        assert_eq!(
            schemas[1].strict["properties"]["apiVersion"]["enum"],
            json!(["dapr.io/v2alpha1"])
        );
        assert_eq!(
            schemas[0].loose["properties"]["kind"]["enum"],
            json!(["Subscription"])
        );
        // metadata stays an open object, as the CRD has it.
        assert!(
            schemas[0].strict["properties"]["metadata"]
                .get("additionalProperties")
                .is_none()
        );
    }
}
