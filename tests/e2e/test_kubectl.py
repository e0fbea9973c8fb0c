"""kubectl 1.37 against a real Sampan API server, on SQLite and on etcd."""

from __future__ import annotations

import json
import time

import yaml

MULTI_DOC = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"""


def test_api_resources_and_versions(kubectl):
    resources = kubectl("api-resources")
    assert "deployments" in resources and "deploy" in resources and "apps/v1" in resources
    assert "customresourcedefinitions" in resources
    versions = kubectl("api-versions").split()
    for gv in ("v1", "apps/v1", "batch/v1", "autoscaling/v2", "autoscaling/v1",
               "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1"):
        assert gv in versions


def test_system_namespaces_exist(kubectl):
    names = kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert ns in names


def test_client_side_apply_multi_document(kubectl, ns):
    out = kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    assert "configmap/app-config created" in out
    assert "deployment.apps/web created" in out
    assert "service/web created" in out
    again = kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    assert "configmap/app-config unchanged" in again
    assert "deployment.apps/web unchanged" in again
    changed = MULTI_DOC.replace("greeting: hello", "greeting: bonjour")
    assert "configmap/app-config configured" in kubectl("apply", "-n", ns, "-f", "-", input=changed)
    cm = kubectl.json("get", "configmap", "app-config", "-n", ns)
    assert cm["data"]["greeting"] == "bonjour"
    assert "kubectl.kubernetes.io/last-applied-configuration" in cm["metadata"]["annotations"]
    deploy = kubectl.json("get", "deployment", "web", "-n", ns)
    # defaults upstream applies
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deploy["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"][0]["protocol"] == "TCP"
    svc = kubectl.json("get", "service", "web", "-n", ns)
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["clusterIP"].startswith("10.43.")


def test_server_side_apply_and_conflicts(kubectl, ns):
    out = kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=MULTI_DOC)
    assert "serverside-applied" in out
    deploy = kubectl.json("get", "deployment", "web", "-n", ns, "--show-managed-fields")
    managers = {m["manager"] for m in deploy["metadata"]["managedFields"]}
    assert "kubectl" in managers
    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
    conflict = kubectl.run("apply", "--server-side", "-n", ns, "-f", "-", input=MULTI_DOC,
                           check=False)
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower() and ".spec.replicas" in conflict.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", input=MULTI_DOC)
    assert kubectl.json("get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2


def test_get_output_formats(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    as_yaml = yaml.safe_load(kubectl("get", "deploy", "web", "-n", ns, "-o", "yaml"))
    assert as_yaml["kind"] == "Deployment" and as_yaml["metadata"]["namespace"] == ns
    as_json = json.loads(kubectl("get", "cm", "-n", ns, "-o", "json"))
    assert as_json["kind"] == "List" and as_json["items"][0]["kind"] == "ConfigMap"
    table = kubectl("get", "deploy", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[0] == "web"
    wide = kubectl("get", "deploy", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].split()[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert "busybox:1.36" in wide[1]
    svc = kubectl("get", "svc", "web", "-n", ns).splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "80/TCP" in svc[1]
    assert kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}") == "2"
    cols = kubectl("get", "deploy", "-n", ns, "-o",
                   "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas").splitlines()
    assert cols == ["NAME   REPLICAS", "web    2"]
    assert kubectl("get", "cm", "-n", ns, "-l", "app=web", "-o", "name").strip() == "configmap/app-config"
    assert kubectl("get", "cm", "-n", ns, "-l", "app=nothing", "-o", "name").strip() == ""
    byfield = kubectl("get", "cm", "-n", ns, "--field-selector", "metadata.name=app-config", "-o", "name")
    assert byfield.strip() == "configmap/app-config"


def test_get_all_namespaces_and_chunking(kubectl, ns):
    for i in range(12):
        kubectl("create", "configmap", f"chunk-{i}", "-n", ns, "--from-literal", f"k={i}")
    names = kubectl("get", "cm", "-n", ns, "--chunk-size=5", "-o", "name").split()
    assert len([n for n in names if n.startswith("configmap/chunk-")]) == 12
    everywhere = kubectl("get", "cm", "-A")
    assert everywhere.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert ns in everywhere


def test_get_watch(kubectl, ns):
    watcher = kubectl.popen("get", "configmaps", "-n", ns, "-w", "--output-watch-events")
    try:
        time.sleep(1.5)
        kubectl("create", "configmap", "watched", "-n", ns, "--from-literal", "a=b")
        kubectl("delete", "configmap", "watched", "-n", ns)
        deadline = time.monotonic() + 20
        seen = ""
        import os
        import select

        fd = watcher.stdout.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline and not ("ADDED" in seen and "DELETED" in seen):
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536).decode()
                seen += chunk
        assert "ADDED" in seen and "watched" in seen and "DELETED" in seen, seen
    finally:
        watcher.kill()
        watcher.wait(5)


def test_describe(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    out = kubectl("describe", "deployment", "web", "-n", ns)
    assert "Name:" in out and "web" in out and "RollingUpdate" in out and "busybox:1.36" in out
    assert "Selector:" in out and "app=web" in out
    out = kubectl("describe", "namespace", ns)
    assert "Active" in out


def test_edit_with_editor(kubectl, ns, tmp_path):
    kubectl("create", "configmap", "editme", "-n", ns, "--from-literal", "color=blue")
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "configmap", "editme", "-n", ns, env={"KUBE_EDITOR": str(editor)})
    assert "edited" in out
    cm = kubectl.json("get", "cm", "editme", "-n", ns, "--show-managed-fields")
    assert cm["data"]["color"] == "green"
    assert any(m["manager"] == "kubectl-edit" for m in cm["metadata"]["managedFields"])


def test_patch_every_type(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    kubectl("patch", "deployment", "web", "-n", ns, "--type=strategic", "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}')
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    containers = d["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1 and containers[0]["image"] == "busybox:1.37"
    assert containers[0]["command"] == ["httpd", "-f", "-p", "8080"]  # merged by name, kept
    assert d["metadata"]["generation"] == 2
    kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p",
            '{"metadata":{"labels":{"tier":"frontend"}}}')
    assert kubectl.json("get", "deploy", "web", "-n", ns)["metadata"]["labels"]["tier"] == "frontend"
    kubectl("patch", "deployment", "web", "-n", ns, "--type=json", "-p",
            '[{"op":"replace","path":"/spec/replicas","value":4}]')
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 4
    bad = kubectl.run("patch", "deployment", "web", "-n", ns, "--type=json", "-p",
                      '[{"op":"test","path":"/spec/replicas","value":99}]', check=False)
    assert bad.returncode != 0


def test_label_annotate_scale(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=MULTI_DOC)
    kubectl("label", "deployment", "web", "-n", ns, "env=prod")
    kubectl("annotate", "deployment", "web", "-n", ns, "owner=team-a")
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    assert d["metadata"]["labels"]["env"] == "prod"
    assert d["metadata"]["annotations"]["owner"] == "team-a"
    kubectl("label", "deployment", "web", "-n", ns, "env-")
    assert "env" not in kubectl.json("get", "deploy", "web", "-n", ns)["metadata"]["labels"]
    assert "scaled" in kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 3
    stale = kubectl.run("scale", "deployment", "web", "-n", ns, "--replicas=1",
                        "--current-replicas=7", check=False)
    assert stale.returncode != 0


def test_create_commands(kubectl, ns):
    kubectl("create", "configmap", "c1", "-n", ns, "--from-literal", "a=1", "--from-literal", "b=2")
    assert kubectl.json("get", "cm", "c1", "-n", ns)["data"] == {"a": "1", "b": "2"}
    kubectl("create", "secret", "generic", "s1", "-n", ns, "--from-literal", "password=hunter2")
    secret = kubectl.json("get", "secret", "s1", "-n", ns)
    assert secret["type"] == "Opaque" and secret["data"]["password"] == "aHVudGVyMg=="
    kubectl("create", "deployment", "d1", "-n", ns, "--image=busybox", "--replicas=3")
    d = kubectl.json("get", "deploy", "d1", "-n", ns)
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    dup = kubectl.run("create", "configmap", "c1", "-n", ns, check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    missing = kubectl.run("create", "configmap", "x", "-n", "no-such-namespace", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_delete_cascade_and_wait(kubectl, ns):
    owner = kubectl.json("create", "configmap", "owner", "-n", ns)  # noqa: F841
    uid = kubectl("get", "cm", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}")

    def dependent(name: str) -> None:
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}))

    dependent("orphaned")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=orphan")
    kubectl("wait", "--for=delete", "cm/owner", "-n", ns, "--timeout=30s")
    orphan = kubectl.json("get", "cm", "orphaned", "-n", ns)
    assert not orphan["metadata"].get("ownerReferences")

    kubectl.json("create", "configmap", "owner", "-n", ns)
    uid = kubectl("get", "cm", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    dependent("child-bg")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=background")
    kubectl("wait", "--for=delete", "cm/child-bg", "-n", ns, "--timeout=30s")

    kubectl.json("create", "configmap", "owner", "-n", ns)
    uid = kubectl("get", "cm", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    dependent("child-fg")
    kubectl("delete", "cm", "owner", "-n", ns, "--cascade=foreground", "--timeout=30s")
    assert kubectl.run("get", "cm", "child-fg", "-n", ns, check=False).returncode != 0


def test_explain(kubectl):
    out = kubectl("explain", "deployment.spec.strategy")
    assert "GROUP:" in out and "apps" in out and "rollingUpdate" in out
    pods = kubectl("explain", "pods.spec.containers.image")
    assert "image" in pods.lower()


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string, pattern: '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'}
              image: {type: string}
              replicas: {type: integer, minimum: 1, maximum: 10}
          status:
            type: object
            properties:
              replicas: {type: integer}
"""


def test_custom_resource_definition(kubectl, ns):
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=established", "crd/crontabs.stable.example.com", "--timeout=30s")
    deadline = time.monotonic() + 20
    while "crontabs" not in kubectl("api-resources", "--api-group=stable.example.com"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    kubectl("apply", "-n", ns, "-f", "-", input="""
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: my-cron}
spec: {cronSpec: "* * * * */5", image: my-cron-image, replicas: 2}
""")
    table = kubectl("get", "ct", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert table[1].split()[:2] == ["my-cron", "*"]
    kubectl("scale", "crontab", "my-cron", "-n", ns, "--replicas=3")
    assert kubectl.json("get", "crontab", "my-cron", "-n", ns)["spec"]["replicas"] == 3
    bad = kubectl.run("apply", "-n", ns, "-f", "-", check=False, input="""
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: bad-cron}
spec: {cronSpec: "not a schedule", replicas: 50}
""")
    assert bad.returncode != 0 and "Invalid" in bad.stderr
    kubectl("delete", "crd", "crontabs.stable.example.com", "--timeout=60s")
    gone = kubectl.run("get", "crontabs", "-n", ns, check=False)
    assert gone.returncode != 0


def test_auth_can_i(kubectl):
    assert kubectl("auth", "can-i", "create", "deployments").strip() == "yes"
    assert kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == "admin"


def test_bad_input(kubectl, ns):
    strict = kubectl.run("apply", "-n", ns, "--validate=strict", "-f", "-", check=False, input="""
apiVersion: v1
kind: ConfigMap
metadata: {name: strict}
data: {a: b}
bogus: field
""")
    assert strict.returncode != 0 and "bogus" in strict.stderr
    invalid = kubectl.run("create", "configmap", "Invalid_Name", "-n", ns, check=False)
    assert invalid.returncode != 0 and "Invalid" in invalid.stderr


def test_namespace_deletion_removes_content(kubectl):
    kubectl("create", "namespace", "doomed")
    kubectl("create", "configmap", "inside", "-n", "doomed", "--from-literal", "a=b")
    kubectl("create", "deployment", "inside", "-n", "doomed", "--image=busybox")
    kubectl("delete", "namespace", "doomed", "--timeout=60s")
    assert kubectl.run("get", "namespace", "doomed", check=False).returncode != 0
    kubectl("create", "namespace", "doomed")
    assert kubectl("get", "cm,deploy", "-n", "doomed", "-o", "name").strip() in ("", "configmap/kube-root-ca.crt")
    kubectl("delete", "namespace", "doomed", "--timeout=60s")


def test_nothing_is_created_in_a_terminating_namespace(kubectl):
    kubectl("create", "namespace", "closing")
    kubectl("create", "configmap", "held", "-n", "closing")
    kubectl("patch", "configmap", "held", "-n", "closing", "--type=merge",
            "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    kubectl("delete", "namespace", "closing", "--wait=false")
    refused = kubectl.run("create", "configmap", "late", "-n", "closing", check=False)
    assert refused.returncode != 0 and "being terminated" in refused.stderr
    kubectl("patch", "configmap", "held", "-n", "closing", "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}')
    kubectl("wait", "--for=delete", "namespace/closing", "--timeout=60s")


def test_rbac_and_impersonation(kubectl, ns):
    kubectl("create", "role", "reader", "-n", ns, "--verb=get,list,watch", "--resource=configmaps")
    kubectl("create", "rolebinding", "bob-reads", "-n", ns, "--role=reader", "--user=bob")
    assert kubectl("auth", "can-i", "list", "configmaps", "-n", ns, "--as=bob").strip() == "yes"
    assert kubectl.run("auth", "can-i", "create", "configmaps", "-n", ns, "--as=bob",
                       check=False).stdout.strip() == "no"
    assert kubectl.run("auth", "can-i", "list", "configmaps", "-n", "default", "--as=bob",
                       check=False).stdout.strip() == "no"
    kubectl("get", "configmaps", "-n", ns, "--as=bob")
    denied = kubectl.run("create", "configmap", "nope", "-n", ns, "--as=bob", check=False)
    assert denied.returncode != 0
    assert (f'configmaps is forbidden: User "bob" cannot create resource "configmaps" in API '
            f'group "" in the namespace "{ns}"') in denied.stderr
    # the default cluster roles are there and bind as upstream's do
    kubectl("create", "rolebinding", "carol-edits", "-n", ns, "--clusterrole=edit", "--user=carol")
    kubectl("create", "configmap", "by-carol", "-n", ns, "--as=carol")
    assert kubectl.run("create", "role", "escalate", "-n", ns, "--verb=*", "--resource=*",
                       "--as=carol", check=False).returncode != 0
