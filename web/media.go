package web

import "net/http"

func (s *Server) mediaRoutes(mux *http.ServeMux) {}
