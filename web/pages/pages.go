// Package pages holds livecart's browser pages: the stream list, the viewer's watch
// page, the creator's studio and the moderator's console. They are plain HTML, CSS and
// JavaScript modules embedded in the binary (no build step, nothing from a CDN) and talk
// to the server only through the public API.
package pages

import "embed"

// Files holds the pages: static/*.html are the page shells, static/css and static/js
// the assets they load.
//
//go:embed static
var Files embed.FS
