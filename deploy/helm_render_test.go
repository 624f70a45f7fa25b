package deploy

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	fullname  = release + "-streamhouse"
	headless  = fullname + "-headless"
	podDomain = headless + "." + namespace + ".svc.cluster.local"
)

// agentPod is the rendered StatefulSet's agent container and pod.
type agentPod struct {
	sts  statefulSetSpec
	c    container
	env  map[string]envVar
	meta meta
}

// checkStatefulSet checks what every rendering must get right and returns
// the agent's pod: env names the agent reads (no duplicates, $(VAR)
// references to earlier variables), identity from the pod name, JOIN
// naming the founders through the headless Service, DATA_DIR on the
// persistent volume, probes on /live and /ready.
func checkStatefulSet(t *testing.T, r rendered, replicas, founders int) agentPod {
	t.Helper()
	var p agentPod
	o := r.get(t, "StatefulSet", fullname, &p.sts)
	p.meta = p.sts.Template.Metadata
	if p.sts.Replicas != replicas || p.sts.PodManagementPolicy != "Parallel" || p.sts.ServiceName != headless {
		t.Errorf("StatefulSet: replicas %d, podManagementPolicy %q, serviceName %q; want %d, Parallel, %s",
			p.sts.Replicas, p.sts.PodManagementPolicy, p.sts.ServiceName, replicas, headless)
	}
	checkSelects(t, "StatefulSet selector", p.sts.Selector.MatchLabels, p.meta.Labels)
	checkSelects(t, "StatefulSet selector", p.sts.Selector.MatchLabels, o.Metadata.Labels)
	if n := len(p.sts.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want the agent alone", n)
	}
	p.c = p.sts.Template.Spec.Containers[0]
	known := agentSettings(t)
	p.env = checkEnv(t, known, "agent", p.c.Env)
	for _, ic := range p.sts.Template.Spec.InitContainers {
		checkEnv(t, known, ic.Name, ic.Env)
	}
	checkIdentity(t, p.env, founders)
	checkDataDir(t, p)
	checkProbes(t, p)
	return p
}

// checkEnv: every name is an agent setting, set once, and every $(VAR) in
// a value names a variable defined before it (Kubernetes leaves others as
// they are).
func checkEnv(t *testing.T, known map[string]bool, who string, env []envVar) map[string]envVar {
	t.Helper()
	byName := map[string]envVar{}
	var names []string
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range env {
		if _, dup := byName[e.Name]; dup {
			t.Errorf("%s: %s set twice", who, e.Name)
		}
		for _, m := range ref.FindAllStringSubmatch(e.Value, -1) {
			if _, ok := byName[m[1]]; !ok {
				t.Errorf("%s: %s=%q refers to $(%s), which is not defined before it", who, e.Name, e.Value, m[1])
			}
		}
		byName[e.Name] = e
		names = append(names, e.Name)
	}
	if bad := unknownSettings(known, names); len(bad) > 0 {
		t.Errorf("%s: environment variables %v are not agent settings (cmd/streamhouse/config.go)", who, bad)
	}
	return byName
}

func checkIdentity(t *testing.T, env map[string]envVar, founders int) {
	t.Helper()
	if id := env["NODE_ID"]; id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("NODE_ID = %+v, want the pod name (fieldRef metadata.name)", id)
	}
	if got, want := env["ADVERTISE_ADDR"].Value, "$(NODE_ID)."+podDomain; got != want {
		t.Errorf("ADVERTISE_ADDR = %q, want %q", got, want)
	}
	gossip := env["GOSSIP_PORT"].Value
	var want []string
	for i := range founders {
		want = append(want, fmt.Sprintf("%s-%d.%s:%s", fullname, i, podDomain, gossip))
	}
	if got := env["JOIN"].Value; got != strings.Join(want, ",") || gossip == "" {
		t.Errorf("JOIN = %q (GOSSIP_PORT %q), want the founders %q", got, gossip, strings.Join(want, ","))
	}
	if got := env["BOOTSTRAP_EXPECT"].Value; got != strconv.Itoa(founders) {
		t.Errorf("BOOTSTRAP_EXPECT = %q, want %d", got, founders)
	}
}

// checkDataDir: DATA_DIR is the mount of the volume claim template.
func checkDataDir(t *testing.T, p agentPod) {
	t.Helper()
	dir := p.env["DATA_DIR"].Value
	for _, m := range p.c.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, vct := range p.sts.VolumeClaimTemplates {
			if vct.Metadata.Name == m.Name && !m.ReadOnly {
				return
			}
		}
		t.Errorf("DATA_DIR %q is mounted from %q, which is not a volume claim template", dir, m.Name)
		return
	}
	t.Errorf("DATA_DIR %q is not a volume mount of the agent", dir)
}

// checkProbes: startup and liveness on /live, readiness on /ready, on the
// container port named http, which is HTTP_PORT.
func checkProbes(t *testing.T, p agentPod) {
	t.Helper()
	scheme := "HTTP"
	if _, tls := p.env["TLS_CERT_PATH"]; tls {
		scheme = "HTTPS"
	}
	for _, pr := range []struct {
		name, path string
		probe      *probe
	}{{"startupProbe", "/live", p.c.StartupProbe}, {"livenessProbe", "/live", p.c.LivenessProbe}, {"readinessProbe", "/ready", p.c.ReadinessProbe}} {
		if pr.probe == nil {
			t.Errorf("no %s", pr.name)
			continue
		}
		if g := pr.probe.HTTPGet; g.Path != pr.path || g.Port != "http" || g.Scheme != scheme {
			t.Errorf("%s: GET %s://:%s%s, want %s://:http%s", pr.name, g.Scheme, g.Port, g.Path, scheme, pr.path)
		}
	}
	if got := containerPort(p.c, "http"); strconv.Itoa(got) != p.env["HTTP_PORT"].Value {
		t.Errorf("container port http = %d, HTTP_PORT = %q", got, p.env["HTTP_PORT"].Value)
	}
}

func containerPort(c container, name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// checkSelects: every label of the selector is on the object.
func checkSelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s is empty", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s %s=%s does not match labels %v", what, k, v, labels)
		}
	}
}

// checkServices: the headless Service publishes not-ready pods on every
// agent port, the client Service offers REST and gRPC; both select the pods.
func checkServices(t *testing.T, r rendered, p agentPod) (headlessObj, client object) {
	t.Helper()
	var hs, cs serviceSpec
	headlessObj = r.get(t, "Service", headless, &hs)
	client = r.get(t, "Service", fullname, &cs)
	if hs.ClusterIP != "None" || !hs.PublishNotReadyAddresses {
		t.Errorf("headless Service: clusterIP %q, publishNotReadyAddresses %v", hs.ClusterIP, hs.PublishNotReadyAddresses)
	}
	checkSelects(t, "headless Service", hs.Selector, p.meta.Labels)
	checkSelects(t, "client Service", cs.Selector, p.meta.Labels)
	ports := func(s serviceSpec) map[string]string {
		m := map[string]string{}
		for _, sp := range s.Ports {
			if sp.TargetPort != sp.Name {
				t.Errorf("Service port %s targets %q", sp.Name, sp.TargetPort)
			}
			m[sp.Name] = strconv.Itoa(sp.Port) + "/" + strings.ToLower(sp.Protocol)
		}
		return m
	}
	e := func(name string) string { return p.env[name].Value }
	wantHeadless := map[string]string{"http": e("HTTP_PORT") + "/", "grpc": e("GRPC_PORT") + "/", "kafka": e("KAFKA_PORT") + "/", "peer": e("PEER_PORT") + "/",
		"gossip-tcp": e("GOSSIP_PORT") + "/tcp", "gossip-udp": e("GOSSIP_PORT") + "/udp"}
	if got := ports(hs); !maps.Equal(got, wantHeadless) {
		t.Errorf("headless Service ports %v, want %v", got, wantHeadless)
	}
	if got, want := ports(cs), map[string]string{"http": e("HTTP_PORT") + "/", "grpc": e("GRPC_PORT") + "/", "kafka": e("KAFKA_PORT") + "/"}; !maps.Equal(got, want) {
		t.Errorf("client Service ports %v, want %v", got, want)
	}
	for name := range wantHeadless {
		if containerPort(p.c, name) == 0 {
			t.Errorf("Service port %s has no container port", name)
		}
	}
	return headlessObj, client
}

func checkPDB(t *testing.T, r rendered, p agentPod, maxUnavailable int) {
	t.Helper()
	var pdb pdbSpec
	r.get(t, "PodDisruptionBudget", fullname, &pdb)
	if pdb.MaxUnavailable != maxUnavailable {
		t.Errorf("PodDisruptionBudget maxUnavailable %d, want %d", pdb.MaxUnavailable, maxUnavailable)
	}
	checkSelects(t, "PodDisruptionBudget selector", pdb.Selector.MatchLabels, p.meta.Labels)
}

func TestHelmTemplateDefaults(t *testing.T) {
	r, err := helmTemplate(t)
	if err != nil {
		t.Fatal(err)
	}
	p := checkStatefulSet(t, r, 3, 3)
	checkServices(t, r, p)
	checkPDB(t, r, p, 1)
	// 90% of limits.memory 8Gi.
	if got, want := p.env["GOMEMLIMIT"].Value, strconv.Itoa(8<<30/10*9); got != want {
		t.Errorf("GOMEMLIMIT = %q, want %s", got, want)
	}
	if got := p.env["S3_BUCKET"].Value; got == "" {
		t.Error("no S3_BUCKET: three agents need a shared bucket")
	}
	for _, name := range []string{"TLS_CERT_PATH", "API_KEYS_FILE", "CLUSTER_SECRET_FILE", "GOSSIP_KEY_FILE", "DATABASE_URL", "AWS_ACCESS_KEY_ID"} {
		if _, ok := p.env[name]; ok {
			t.Errorf("%s set by default", name)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "Secret"} {
		if len(r[kind]) > 0 {
			t.Errorf("%s rendered by default: %v", kind, r.names())
		}
	}
	if p.meta.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("no prometheus.io/scrape annotation without a ServiceMonitor: %v", p.meta.Annotations)
	}
}

func TestHelmTemplateSecure(t *testing.T) {
	r, err := helmTemplate(t, "-f", secureValue)
	if err != nil {
		t.Fatal(err)
	}
	p := checkStatefulSet(t, r, 5, 5)
	headlessObj, client := checkServices(t, r, p)
	checkPDB(t, r, p, 2)
	for name, want := range map[string]string{"S3_BUCKET": "events", "S3_ENDPOINT": "http://minio.storage.svc:9000", "S3_REGION": "eu-west-1",
		"S3_PATH_STYLE": "true", "METRICS_AUTH": "true", "GOMEMLIMIT": "6GiB", "SEGMENT_CACHE_SIZE": "1073741824", "DEAD_AGENT_TIMEOUT": "60s"} {
		if got := p.env[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]secretKey{"DATABASE_URL": {"streamhouse-pg", "DATABASE_URL"},
		"AWS_ACCESS_KEY_ID": {"streamhouse-s3", "AWS_ACCESS_KEY_ID"}, "AWS_SECRET_ACCESS_KEY": {"streamhouse-s3", "AWS_SECRET_ACCESS_KEY"}} {
		if e := p.env[name]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || *e.ValueFrom.SecretKeyRef != want {
			t.Errorf("%s = %+v, want from Secret %+v", name, e, want)
		}
	}
	for name, want := range map[string]secretKey{"TLS_CERT_PATH": {"streamhouse-tls", "tls.crt"}, "TLS_KEY_PATH": {"streamhouse-tls", "tls.key"},
		"TLS_CA_PATH": {"streamhouse-tls", "ca.crt"}, "API_KEYS_FILE": {fullname, "api_keys"},
		"CLUSTER_SECRET_FILE": {"streamhouse-peer", "cluster-secret"}, "GOSSIP_KEY_FILE": {"streamhouse-peer", "gossip-key"}} {
		if got, ok := mountedSecret(p, p.env[name].Value); !ok || got != want {
			t.Errorf("%s = %q is %+v (found %v), want Secret %+v mounted there", name, p.env[name].Value, got, ok, want)
		}
	}
	var secret = r.get(t, "Secret", fullname, nil)
	if keys := secret.StringData["api_keys"]; !strings.HasPrefix(keys, "ops:admin:*:9f86d08") || len(secret.StringData) != 1 {
		t.Errorf("chart Secret %v, want only api_keys with the listed line", secret.StringData)
	}
	if p.meta.Annotations["checksum/secret"] == "" {
		t.Error("pods do not roll when the chart's Secret changes: no checksum/secret annotation")
	}
	if _, ok := p.meta.Annotations["prometheus.io/scrape"]; ok {
		t.Error("prometheus.io annotations next to a ServiceMonitor scrape every agent twice")
	}
	checkServiceMonitor(t, r, headlessObj, client)
}

// mountedSecret returns the Secret key the agent container sees at file.
func mountedSecret(p agentPod, file string) (secretKey, bool) {
	for _, m := range p.c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, m.MountPath+"/")
		if !ok || !m.ReadOnly {
			continue
		}
		for _, v := range p.sts.Template.Spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					continue
				}
				for _, it := range src.Secret.Items {
					if path.Clean(it.Path) == rel {
						return secretKey{src.Secret.Name, it.Key}, true
					}
				}
			}
		}
	}
	return secretKey{}, false
}

// checkServiceMonitor: it selects the headless Service (not-ready agents
// are scraped too) and not the client one, on its http port, over HTTPS
// with the token Secret.
func checkServiceMonitor(t *testing.T, r rendered, headlessObj, client object) {
	t.Helper()
	var sm serviceMonitorSpec
	o := r.get(t, "ServiceMonitor", fullname, &sm)
	if o.APIVersion != "monitoring.coreos.com/v1" || o.Metadata.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor %s, labels %v", o.APIVersion, o.Metadata.Labels)
	}
	checkSelects(t, "ServiceMonitor selector", sm.Selector.MatchLabels, headlessObj.Metadata.Labels)
	selectsClient := true
	for k, v := range sm.Selector.MatchLabels {
		selectsClient = selectsClient && client.Metadata.Labels[k] == v
	}
	if selectsClient {
		t.Error("ServiceMonitor also selects the client Service: every agent would be scraped twice")
	}
	if len(sm.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v", sm.Endpoints)
	}
	ep := sm.Endpoints[0]
	if ep.Port != "http" || ep.Path != "/metrics" || ep.Scheme != "https" || ep.TLSConfig["serverName"] == nil {
		t.Errorf("ServiceMonitor endpoint %+v", ep)
	}
	// The alerts select up{job=~"streamhouse.*"} and group by cluster and
	// instance.
	if job := headlessObj.Metadata.Labels[sm.JobLabel]; !strings.HasPrefix(job, "streamhouse") {
		t.Errorf("ServiceMonitor jobLabel %q gives job %q", sm.JobLabel, job)
	}
	relabel := map[string]string{}
	for _, rl := range ep.Relabelings {
		relabel[rl.TargetLabel] = strings.Join(rl.SourceLabels, ",") + rl.Replacement
	}
	if relabel["instance"] != "__meta_kubernetes_pod_name" || relabel["cluster"] != fullname {
		t.Errorf("ServiceMonitor relabelings %+v: want instance from the pod name and cluster %q", ep.Relabelings, fullname)
	}
	if a := ep.Authorization; a == nil || a.Type != "Bearer" || a.Credentials != (secretKey{"streamhouse-prometheus-token", "token"}) {
		t.Errorf("ServiceMonitor authorization %+v, want the token Secret (METRICS_AUTH is on)", a)
	}
}

// TestHelmTemplateSingleAgent: one agent bootstraps alone, naming itself
// in JOIN, and may use the pod's volume as its object store.
func TestHelmTemplateSingleAgent(t *testing.T) {
	r, err := helmTemplate(t, "--set", "replicas=1,cluster.bootstrapExpect=1,s3.bucket=,goMemLimit=")
	if err != nil {
		t.Fatal(err)
	}
	p := checkStatefulSet(t, r, 1, 1)
	for _, name := range []string{"S3_BUCKET", "GOMEMLIMIT"} {
		if _, ok := p.env[name]; ok {
			t.Errorf("%s set: %+v", name, p.env[name])
		}
	}
}

// TestHelmRefusesBadValues: values that would give a broken cluster fail
// the rendering with a message naming the value.
func TestHelmRefusesBadValues(t *testing.T) {
	cases := []struct{ set, want string }{
		{"config.SEGMENT_CACHE_SIZ=1", "config.SEGMENT_CACHE_SIZ is not a StreamHouse agent setting"},
		{"config.NODE_ID=a", "config.NODE_ID is set by the chart"},
		{"config.LOG_LEVEL=", "config.LOG_LEVEL is empty"},
		{"cluster.bootstrapExpect=5", "cluster.bootstrapExpect=5: must be between 1 and replicas (3)"},
		{"s3.bucket=", "agents of one cluster must share a bucket"},
		{"s3.endpoint=minio:9000", `s3.endpoint="minio:9000": must be an http:// or https:// URL`},
		{"s3.accessKeyId=AKIA", "must be set together"},
		{"s3.existingSecret=s,s3.accessKeyId=a,s3.secretAccessKey=b", "s3: set existingSecret or accessKeyId/secretAccessKey, not both"},
		{"tls.enabled=true", "tls.enabled needs tls.secretName"},
		{"tls.peerCA=true", "tls.peerCA (mutual TLS between agents) needs tls.enabled"},
		{"apiKeys.enabled=true", "apiKeys.enabled needs apiKeys.existingSecret or apiKeys.lines"},
		{"apiKeys.metricsAuth=true", "take effect only with apiKeys.enabled=true"},
		{"clusterSecret.value=short", "clusterSecret.value is 5 bytes: use at least 16"},
		{"podDisruptionBudget.maxUnavailable=2", "podDisruptionBudget.maxUnavailable=2: must be between 1 and 1 so that 3 Raft voters keep their majority"},
		{"goMemLimit=lots", `goMemLimit="lots"`},
		{"resources.limits.memory=1.5Gi", "goMemLimit: auto cannot read resources.limits.memory"},
		{"serviceMonitor.enabled=true,tls.enabled=true,tls.secretName=x", "serviceMonitor.tlsConfig is needed with tls.enabled"},
		{"serviceMonitor.enabled=true,apiKeys.enabled=true,apiKeys.existingSecret=k,apiKeys.metricsAuth=true", "serviceMonitor.bearerTokenSecret"},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			t.Parallel() // helm mostly starts up; two at a time (GOMAXPROCS)
			_, err := helmTemplate(t, "--set", c.set)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("--set %s: got %v, want an error containing %q", c.set, err, c.want)
			}
		})
	}
}
