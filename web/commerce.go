package web

import "net/http"

func (s *Server) commerceRoutes(mux *http.ServeMux) {}
