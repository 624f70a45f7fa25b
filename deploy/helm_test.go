package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	chartDir    = "helm/streamhouse"
	secureValue = "helm/streamhouse/ci/secure-values.yaml"
	release     = "sh"
	namespace   = "streaming"
)

// The parts of the rendered objects the tests look at.
type (
	object struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   meta              `yaml:"metadata"`
		Spec       yaml.Node         `yaml:"spec"`
		StringData map[string]string `yaml:"stringData"`
	}
	meta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	statefulSetSpec struct {
		ServiceName         string `yaml:"serviceName"`
		Replicas            int    `yaml:"replicas"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		Selector            struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	}
	podSpec struct {
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []volume    `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []envVar `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
			Protocol      string `yaml:"protocol"`
		} `yaml:"ports"`
		StartupProbe   *probe `yaml:"startupProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	envVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *secretKey `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
	secretKey struct {
		Name string `yaml:"name"`
		Key  string `yaml:"key"`
	}
	probe struct {
		HTTPGet struct {
			Path   string `yaml:"path"`
			Port   string `yaml:"port"`
			Scheme string `yaml:"scheme"`
		} `yaml:"httpGet"`
	}
	volume struct {
		Name      string `yaml:"name"`
		Projected *struct {
			Sources []struct {
				Secret *struct {
					Name  string `yaml:"name"`
					Items []struct {
						Key  string `yaml:"key"`
						Path string `yaml:"path"`
					} `yaml:"items"`
				} `yaml:"secret"`
			} `yaml:"sources"`
		} `yaml:"projected"`
	}
	serviceSpec struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	}
	pdbSpec struct {
		MaxUnavailable int `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}
	serviceMonitorSpec struct {
		JobLabel string `yaml:"jobLabel"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port        string         `yaml:"port"`
			Path        string         `yaml:"path"`
			Scheme      string         `yaml:"scheme"`
			TLSConfig   map[string]any `yaml:"tlsConfig"`
			Relabelings []struct {
				SourceLabels []string `yaml:"sourceLabels"`
				TargetLabel  string   `yaml:"targetLabel"`
				Replacement  string   `yaml:"replacement"`
			} `yaml:"relabelings"`
			Authorization *struct {
				Type        string    `yaml:"type"`
				Credentials secretKey `yaml:"credentials"`
			} `yaml:"authorization"`
		} `yaml:"endpoints"`
	}
)

// rendered is the output of helm template, by kind and name.
type rendered map[string]map[string]object

func (r rendered) get(t *testing.T, kind, name string, spec any) object {
	t.Helper()
	o, ok := r[kind][name]
	if !ok {
		t.Fatalf("no %s %q rendered (have %v)", kind, name, r.names())
	}
	if spec != nil {
		if err := o.Spec.Decode(spec); err != nil {
			t.Fatalf("%s %s: %v", kind, name, err)
		}
	}
	return o
}

func (r rendered) names() []string {
	var out []string
	for kind, objs := range r {
		for name := range objs {
			out = append(out, kind+"/"+name)
		}
	}
	slices.Sort(out)
	return out
}

// helmTemplate renders the chart as release "sh" in namespace "streaming"
// for Kubernetes 1.30 (a helm built by go install, without the release
// build's flags, assumes 1.20, below the chart's kubeVersion).
func helmTemplate(t *testing.T, args ...string) (rendered, error) {
	t.Helper()
	all := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", "1.30.0"}, args...)
	out, err := run(t, ".", nil, helmBinary(t), all...)
	if err != nil {
		return nil, err
	}
	return parseManifests(out)
}

func parseManifests(out string) (rendered, error) {
	r := rendered{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return nil, fmt.Errorf("rendered YAML: %w", err)
		}
		if o.Kind == "" {
			continue // an empty document
		}
		if r[o.Kind] == nil {
			r[o.Kind] = map[string]object{}
		}
		if _, dup := r[o.Kind][o.Metadata.Name]; dup {
			return nil, fmt.Errorf("%s %s rendered twice", o.Kind, o.Metadata.Name)
		}
		r[o.Kind][o.Metadata.Name] = o
	}
}

func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for _, args := range [][]string{nil, {"-f", secureValue}} {
		out, err := run(t, ".", nil, helm, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Errorf("helm lint %v: %v\n%s", args, err, out)
		}
	}
}

// TestChartSettingsMatchAgent: the chart refuses config names outside its
// list of agent settings, so the list must be config.go's.
func TestChartSettingsMatchAgent(t *testing.T) {
	known := agentSettings(t)
	b, err := os.ReadFile(chartDir + "/templates/_helpers.tpl")
	if err != nil {
		t.Fatal(err)
	}
	list := func(def string) []string {
		m := regexp.MustCompile(`(?s)define "streamhouse\.` + def + `" -}}\n(.*?)\n\{\{- end`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("_helpers.tpl: no define %q", def)
		}
		return strings.Fields(string(m[1]))
	}
	chart := list("agentSettings")
	var want []string
	for n := range known {
		want = append(want, n)
	}
	slices.Sort(want)
	if !slices.Equal(chart, want) {
		t.Errorf("streamhouse.agentSettings in %s/templates/_helpers.tpl differs from the env tags of agentCmd in cmd/streamhouse/config.go; replace its line with:\n%s", chartDir, strings.Join(want, " "))
	}
	if bad := unknownSettings(known, list("managedSettings")); len(bad) > 0 {
		t.Errorf("streamhouse.managedSettings names %v, which the agent does not read", bad)
	}
}
