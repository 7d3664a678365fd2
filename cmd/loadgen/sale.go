package main

import "errors"

func runSale(args []string) error { return errors.New("sale mode is not built yet") }
