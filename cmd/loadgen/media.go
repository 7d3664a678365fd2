package main

import "errors"

func runMedia(args []string) error { return errors.New("media mode is not built yet") }
