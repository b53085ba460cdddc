//! Every YAML under `tekton/` validates against Tekton v1.15.0's CRD schemas
//! (`../shared/tekton-crds/`), with unknown fields rejected, as a strict API server would.
//!
//! The CRDs' `openAPIV3Schema` is turned into JSON Schema: objects that list their properties are
//! closed (`additionalProperties: false`) unless Kubernetes marks them
//! `x-kubernetes-preserve-unknown-fields`, and `x-kubernetes-int-or-string` becomes an
//! integer-or-string choice.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tekton-crds")
}

fn crd_file(kind: &str) -> &'static str {
    match kind {
        "Task" => "300-task.yaml",
        "TaskRun" => "300-taskrun.yaml",
        "Pipeline" => "300-pipeline.yaml",
        "PipelineRun" => "300-pipelinerun.yaml",
        "StepAction" => "300-stepaction.yaml",
        other => panic!("no CRD for kind {other}"),
    }
}

/// The closed JSON Schema of `kind` at `api_version` (`tekton.dev/v1`).
fn schema_for(kind: &str, api_version: &str) -> Value {
    let path = crd_dir().join(crd_file(kind));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repo)",
            path.display()
        )
    });
    let crd: Value = serde_norway::from_str(&text).unwrap();
    let version = api_version.rsplit('/').next().unwrap();
    let versions = crd["spec"]["versions"].as_array().unwrap();
    let entry = versions
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("{kind} has no version {version} in {}", path.display()));
    close(entry["schema"]["openAPIV3Schema"].clone())
}

fn close(mut schema: Value) -> Value {
    let Some(obj) = schema.as_object_mut() else {
        return schema;
    };
    if obj.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
        obj.remove("type");
        obj.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    let preserve = obj.remove("x-kubernetes-preserve-unknown-fields") == Some(Value::Bool(true));
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for value in props.values_mut() {
            *value = close(value.take());
        }
        if !preserve && !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(value) = obj.get_mut(key).filter(|v| v.is_object()) {
            *value = close(value.take());
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            for value in list.iter_mut() {
                *value = close(value.take());
            }
        }
    }
    schema
}

/// Validation errors of one document, as `path: message` lines.
fn errors(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().expect("a kind");
    let api = doc["apiVersion"].as_str().expect("an apiVersion");
    let schema = schema_for(kind, api);
    let validator = jsonschema::draft4::new(&schema).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn parse(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

#[test]
fn every_tekton_yaml_validates_against_the_v1_15_crds() {
    let mut files = Vec::new();
    yaml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tekton"),
        &mut files,
    );
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the Task, StepAction and examples: {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let doc = parse(&std::fs::read_to_string(file).unwrap());
        for error in errors(&doc) {
            failures.push(format!("{}: {error}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn legacy_breakpoint_spelling_is_rejected_by_v1_15() {
    let doc = parse(
        "apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: x}\n\
         spec:\n  taskRef: {name: kbuild}\n  debug:\n    breakpoint: [onFailure]\n",
    );
    let errors = errors(&doc);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/spec/debug") && e.contains("breakpoint")),
        "{errors:?}"
    );
}

#[test]
fn unknown_step_fields_are_rejected() {
    let doc = parse(
        "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\n\
         spec:\n  steps:\n    - name: s\n      image: busybox\n      privileged: true\n",
    );
    let errors = errors(&doc);
    assert!(
        errors.iter().any(|e| e.contains("privileged")),
        "{errors:?}"
    );
}

#[test]
fn the_task_runs_kbuild_without_privileges_and_declares_chains_results() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tekton/task/kbuild/0.1/kbuild.yaml");
    let task = parse(&std::fs::read_to_string(path).unwrap());
    let steps = task["spec"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["command"], json!(["/kbuild"]));
    assert!(steps[0]["securityContext"].get("privileged").is_none());
    let results: Vec<&str> = task["spec"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["IMAGE_DIGEST", "IMAGE_URL", "IMAGE_REF"]);
    let params: Vec<&str> = task["spec"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "IMAGE",
        "DOCKERFILE",
        "CONTEXT",
        "EXTRA_ARGS",
        "CACHE_REPO",
        "BUILDER_IMAGE",
    ] {
        assert!(params.contains(&name), "missing param {name}");
    }
}
