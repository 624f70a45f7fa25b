// Package deploy holds the files that run StreamHouse outside a
// development checkout (Dockerfile, compose files, Kubernetes manifests,
// the Helm chart, Prometheus rules, Grafana dashboards) and no code. Its
// tests check them: the Helm chart with `helm lint` and `helm template`,
// the compose files with `docker-compose config`, and that every
// environment variable they give an agent is one the agent reads.
package deploy
