//! The chart as a production install uses it, with the real helm: `values-ha.yaml`, the
//! PodDisruptionBudget only where it protects something, the overrides a platform engineer
//! sets (as a subchart with `global`, scheduling, topology spread), and the values schema
//! refusing bad ones by name. (`chart.rs` checks every value set's objects fit together.)

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use strait_tests::chart::{
    CONTROL_PLANE, ValueSet, pod_labels, pod_spec, render, scratch, selected, the, value_sets,
};
use strait_tests::helm::{Helm, repo_root};
use strait_tests::manifests::Rendered;

fn set(dir: &Path, name: &str) -> ValueSet {
    value_sets(dir)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no value set {name}"))
}

#[test]
fn values_ha_runs_three_spread_replicas_behind_a_budget_and_a_failing_webhook() {
    let test = "values_ha_runs_three_spread_replicas_behind_a_budget_and_a_failing_webhook";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("values-ha");
    let rendered = render(&helm, &set(&dir, "values-ha"));
    let deployment = the(&rendered.deployments, "Deployment");
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(3));
    let labels = pod_labels(&deployment);
    let pod = pod_spec(&deployment);

    let pdb = the(&rendered.pdbs, "PodDisruptionBudget");
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(2)));
    assert_eq!(pdb_spec.max_unavailable, None);
    assert!(selected(pdb_spec.selector.as_ref().unwrap(), &labels));

    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .expect("replicas prefer different nodes");
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let term_selector = anti[0].pod_affinity_term.label_selector.as_ref().unwrap();
    assert!(selected(term_selector, &labels));

    let spread = pod.topology_spread_constraints.expect("spread over zones");
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    assert!(selected(
        spread[0].label_selector.as_ref().unwrap(),
        &labels
    ));

    let webhooks = the(&rendered.webhooks, "MutatingWebhookConfiguration")
        .webhooks
        .unwrap();
    assert!(
        webhooks
            .iter()
            .all(|w| w.failure_policy.as_deref() == Some("Fail")),
        "pods are refused rather than started outside the mesh"
    );
    // The control plane's own namespace never goes to the webhook, so Fail cannot keep the
    // control plane itself from starting.
    for webhook in &webhooks {
        let excluded = webhook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.key == "kubernetes.io/metadata.name")
            .and_then(|e| e.values.clone())
            .unwrap();
        assert!(
            excluded.contains(&"strait-system".to_owned()),
            "{excluded:?}"
        );
    }

    // Every container the chart runs has the runtime's default seccomp profile.
    for container in &pod.containers {
        let profile = container
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .unwrap_or_else(|| panic!("{} has no seccomp profile", container.name));
        assert_eq!(profile.type_, "RuntimeDefault");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_single_replica_gets_no_disruption_budget_and_two_get_one() {
    let test = "a_single_replica_gets_no_disruption_budget_and_two_get_one";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("pdb");
    let default = render(&helm, &set(&dir, "default"));
    assert_eq!(
        the(&default.deployments, "Deployment")
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    assert!(
        default.pdbs.is_empty(),
        "a budget over one replica protects nothing"
    );
    let two = dir.join("two.yaml");
    std::fs::write(&two, "controlPlane:\n  replicas: 2\n").unwrap();
    let set = ValueSet {
        name: "two",
        namespace: "strait-system",
        files: vec![two],
    };
    let rendered = render(&helm, &set);
    let pdb = the(&rendered.pdbs, "PodDisruptionBudget");
    assert_eq!(pdb.metadata.name.as_deref(), Some(CONTROL_PLANE));
    assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_schema_refuses_bad_production_overrides_by_name() {
    let test = "the_schema_refuses_bad_production_overrides_by_name";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("schema-production");
    for (name, values, expect) in [
        (
            "tracing without a collector",
            "proxy:\n  tracing:\n    enabled: true\n",
            &["/proxy/tracing/collector", "minLength"][..],
        ),
        (
            "collector without a scheme",
            "proxy:\n  tracing:\n    collector: otel:4317\n",
            &["/proxy/tracing/collector", "pattern"][..],
        ),
        (
            "sample ratio over 1",
            "proxy:\n  tracing:\n    sampleRatio: 2\n",
            &["/proxy/tracing/sampleRatio", "maximum"][..],
        ),
        (
            "budget in words",
            "controlPlane:\n  podDisruptionBudget:\n    minAvailable: half\n",
            &["/controlPlane/podDisruptionBudget/minAvailable"][..],
        ),
        (
            "spread without a key",
            "controlPlane:\n  topologySpreadConstraints:\n    - maxSkew: 1\n      whenUnsatisfiable: ScheduleAnyway\n",
            &["/controlPlane/topologySpreadConstraints/0", "topologyKey"][..],
        ),
        (
            "empty pull secret",
            "proxy:\n  imagePullSecrets: [\"\"]\n",
            &["/proxy/imagePullSecrets/0", "minLength"][..],
        ),
        (
            "opaque port 0",
            "proxy:\n  opaquePorts: [0]\n",
            &["/proxy/opaquePorts/0", "minimum"][..],
        ),
    ] {
        let file: PathBuf = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&file, values).unwrap();
        let output = helm.template("strait-system", &[&file]);
        assert!(!output.success, "{name}: accepted:\n{}", output.stdout);
        let said = format!("{}{}", output.stdout, output.stderr);
        assert!(
            said.contains("values don't meet the specifications of the schema"),
            "{name}: not refused by the schema:\n{said}"
        );
        for needle in expect {
            assert!(said.contains(needle), "{name}: lacks {needle:?}:\n{said}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_crds_chart_renders_exactly_the_charts_crds_and_keeps_them_on_uninstall() {
    let test = "the_crds_chart_renders_exactly_the_charts_crds_and_keeps_them_on_uninstall";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let crds_chart = repo_root().join("charts/strait-crds");
    let dir = crds_chart.display().to_string();
    for strict in [false, true] {
        let mut args = vec!["lint", dir.as_str()];
        if strict {
            args.push("--strict");
        }
        let output = helm.run(&args);
        assert!(
            output.success && !output.stdout.contains("[WARNING]"),
            "{}{}",
            output.stdout,
            output.stderr
        );
    }
    let output = helm.run(&[
        "template",
        "strait-crds",
        &dir,
        "--namespace",
        "strait-system",
    ]);
    assert!(output.success, "{}", output.stderr);
    let upgraded = Rendered::parse(&output.stdout);
    let scratch_dir = scratch("crds-chart");
    let installed = render(&helm, &set(&scratch_dir, "default"));
    let _ = std::fs::remove_dir_all(&scratch_dir);
    assert_eq!(upgraded.crds.len(), 3);
    assert_eq!(
        upgraded.crds, installed.crds,
        "helm upgrade of strait-crds applies the very CRDs a first install of strait creates"
    );
    for crd in upgraded.crds.values() {
        let annotations = crd.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep"),
            "uninstalling strait-crds must not delete {:?} and every policy",
            crd.metadata.name
        );
    }
}

#[test]
fn the_documented_upgrade_does_not_reuse_old_values_and_upgrades_the_crds() {
    let doc = std::fs::read_to_string(repo_root().join("docs/kubernetes.md")).unwrap();
    let mut in_code = false;
    let mut commands = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            commands.push(line);
        }
    }
    let helm_commands: Vec<&&str> = commands.iter().filter(|l| l.contains("helm ")).collect();
    assert!(
        helm_commands.iter().all(|l| !l.contains("--reuse-values")),
        "a documented command reuses the previous release's values: {helm_commands:?}"
    );
    let crds = commands
        .iter()
        .position(|l| l.contains("helm upgrade --install strait-crds ./charts/strait-crds"))
        .expect("the upgrade of the CRDs chart is documented");
    let strait = commands
        .iter()
        .position(|l| l.contains("helm upgrade strait ./charts/strait"))
        .expect("the upgrade of strait is documented");
    assert!(crds < strait, "the CRDs are upgraded first");
}
