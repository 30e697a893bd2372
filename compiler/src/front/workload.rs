//! Workloads standing for their pods: a `Deployment`, `StatefulSet`,
//! `DaemonSet`, `ReplicaSet`, `ReplicationController`, `Job` or OpenShift
//! `DeploymentConfig` at `spec.template`, a `CronJob` at
//! `spec.jobTemplate.spec.template`. Only the pod template is read, with
//! the same code as a `Pod`'s spec.

use super::core::pod_template;
use super::decode::{join, plain_key, Ctx};
use super::yaml::{Node, Value};
use super::{Body, Meta, PodTemplate, WorkloadObject};
use crate::diag::codes;
use policyc_ir::labels::Labels;

/// Labels the API server gives the pods of a `Job` (unless it has
/// `manualSelector: true`), holding the job's name.
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// Decodes a workload's pod template.
pub fn workload(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let spec = super::spec(ctx, root)?;
    let (parent, parent_path) = if meta.kind == "CronJob" {
        let job_template = child(ctx, spec, "spec", "jobTemplate")?;
        (child(ctx, job_template, "spec.jobTemplate", "spec")?, "spec.jobTemplate.spec")
    } else {
        (spec, "spec")
    };
    let template = child(ctx, parent, parent_path, "template")?;
    let path = join(parent_path, "template");
    let Value::Map(_) = template.value else {
        ctx.wrong_type(template, &path, "a mapping");
        return None;
    };
    let mut labels = match present(template, "metadata") {
        Some(md) => match present(md, "labels") {
            Some(l) => ctx.labels(l, &join(&path, "metadata.labels"), plain_key),
            None => Labels::new(),
        },
        None => Labels::new(),
    };
    // The API server adds the job's name to a Job's pod template (with a
    // uid policyc cannot know), and policies select Job pods by it. A
    // CronJob's jobs get generated names, so nothing is added there.
    let manual_selector = present(spec, "manualSelector").is_some_and(|n| n.value == Value::Bool(true));
    if meta.kind == "Job" && !manual_selector {
        for key in JOB_NAME_LABELS {
            if labels.get(key).is_none() {
                labels.insert(key, meta.name.clone());
            }
        }
    }
    let template = match present(template, "spec") {
        Some(spec) => pod_template(ctx, labels, spec, &join(&path, "spec")),
        None => {
            ctx.report(codes::MISSING_FIELD, Some(template), &path, "missing field `spec`", None);
            PodTemplate { labels, ..PodTemplate::default() }
        }
    };
    Some(Body::Workload(WorkloadObject { template }))
}

/// `node.key`, if present and not `null`.
fn present<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    node.get(key).filter(|n| n.value != Value::Null)
}

/// The required field `key` of the mapping `node` at `path`.
fn child<'n>(ctx: &mut Ctx, node: &'n Node, path: &str, key: &str) -> Option<&'n Node> {
    let Value::Map(_) = node.value else {
        ctx.wrong_type(node, path, "a mapping");
        return None;
    };
    let found = present(node, key);
    if found.is_none() {
        ctx.report(codes::MISSING_FIELD, Some(node), path, format!("missing field `{key}`"), None);
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::diag::{codes, Diagnostic};
    use crate::front::{Body, Input, WorkloadObject, WORKLOAD_KINDS};
    use policyc_ir::cluster::NamedPort;
    use policyc_ir::labels::Labels;
    use policyc_ir::protocol::Protocol;

    fn parse(text: &str) -> (Option<WorkloadObject>, Vec<Diagnostic>) {
        let mut input = Input::default();
        input.add_source("t.yaml", text.to_string());
        let w = input.objects.into_iter().find_map(|o| match o.body {
            Body::Workload(w) => Some(w),
            _ => None,
        });
        (w, input.diagnostics)
    }

    const POD_TEMPLATE: &str = r#"
      metadata:
        labels: {app: web, pod-template-hash: abc}
      spec:
        serviceAccountName: web
        hostNetwork: false
        containers:
        - name: web
          ports: [{name: http, containerPort: 8080}]
"#;

    fn expected() -> WorkloadObject {
        let mut w = WorkloadObject { template: Default::default() };
        w.template.labels = Labels::from_pairs([("app", "web"), ("pod-template-hash", "abc")]);
        w.template.service_account = Some("web".into());
        w.template.ports = vec![NamedPort { name: "http".into(), protocol: Protocol::Tcp, port: 8080 }];
        w
    }

    #[test]
    fn every_workload_kind() {
        for kind in WORKLOAD_KINDS {
            let (api, body) = match *kind {
                "CronJob" => (
                    "batch/v1",
                    format!(
                        "  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:{}",
                        indent(POD_TEMPLATE, 4)
                    ),
                ),
                "Job" => ("batch/v1", format!("  template:{POD_TEMPLATE}")),
                "ReplicationController" => ("v1", format!("  template:{POD_TEMPLATE}")),
                "DeploymentConfig" => ("apps.openshift.io/v1", format!("  template:{POD_TEMPLATE}")),
                _ => ("apps/v1", format!("  replicas: 2\n  template:{POD_TEMPLATE}")),
            };
            let text =
                format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w, namespace: prod}}\nspec:\n{body}");
            let (w, diags) = parse(&text);
            assert!(diags.is_empty(), "{kind}: {diags:#?}");
            let mut w = w.unwrap();
            if *kind == "Job" {
                w.template.labels.0.retain(|k, _| !k.ends_with("job-name"));
            }
            assert_eq!(w, expected(), "{kind}");
        }
    }

    fn indent(text: &str, by: usize) -> String {
        text.lines()
            .map(|l| if l.is_empty() { String::new() } else { format!("{}{l}", " ".repeat(by)) })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    #[test]
    fn job_pods_carry_the_job_name() {
        let job = |extra: &str| {
            let text = format!(
                "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: backup}}\nspec:\n{extra}  template:{POD_TEMPLATE}"
            );
            parse(&text).0.unwrap().template.labels
        };
        let labels = job("");
        assert_eq!(labels.get("job-name"), Some("backup"));
        assert_eq!(labels.get("batch.kubernetes.io/job-name"), Some("backup"));
        assert_eq!(labels.get("app"), Some("web"));
        assert_eq!(job("  manualSelector: true\n").get("job-name"), None);
    }

    #[test]
    fn missing_template() {
        let (w, diags) = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec: {replicas: 1}\n");
        assert!(w.is_none());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, codes::MISSING_FIELD);
        assert_eq!(diags[0].message, "missing field `template`");
        assert_eq!(diags[0].location.path.as_deref(), Some("spec"));
        let (_, diags) =
            parse("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: w}\nspec: {jobTemplate: {spec: {}}}\n");
        assert_eq!(diags[0].location.path.as_deref(), Some("spec.jobTemplate.spec"));
        let (_, diags) = parse("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: w}\nspec: {schedule: x}\n");
        assert_eq!(diags[0].message, "missing field `jobTemplate`");
        let (_, diags) = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\n");
        assert_eq!(diags[0].message, "missing field `spec`");
    }

    #[test]
    fn template_errors_have_paths() {
        let (w, diags) = parse(concat!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n",
            "    metadata: {labels: {app: web}}\n    spec: {containers: [{ports: [{name: http, containerPort: 99999}]}]}\n",
        ));
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, codes::PORT_OUT_OF_RANGE);
        assert_eq!(diags[0].location.path.as_deref(), Some("spec.template.spec.containers[0].ports[0].containerPort"));
        assert_eq!(w.unwrap().template.labels, Labels::from_pairs([("app", "web")]));
        let (_, diags) =
            parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec: {template: {metadata: {}}}\n");
        assert_eq!(diags[0].message, "missing field `spec`");
        assert_eq!(diags[0].location.path.as_deref(), Some("spec.template"));
    }
}
