package main

import "errors"

func runWS(args []string) error { return errors.New("ws mode is not built yet") }
