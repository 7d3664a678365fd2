package web

import "net/http"

func (s *Server) liveRoutes(mux *http.ServeMux) {}
