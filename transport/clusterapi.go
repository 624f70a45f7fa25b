package transport

import (
	"net/http"
	"sort"
)

// handleCluster serves GET /api/v1/cluster.
func (s *HTTPServer) handleCluster(w http.ResponseWriter, _ *http.Request) error {
	if s.cfg.Cluster == nil {
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: "cluster status is not available on this agent"}
	}
	st := s.cfg.Cluster.ClusterStatus()
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	for i := range st.Members {
		if st.Members[i].Leaderships == nil {
			st.Members[i].Leaderships = []string{}
		}
	}
	if st.Voters == nil {
		st.Voters = []string{}
	}
	if st.NonVoters == nil {
		st.NonVoters = []string{}
	}
	if st.Members == nil {
		st.Members = []ClusterMember{}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
