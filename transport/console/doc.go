// Package console is the web console every agent serves at /ui/ on its
// REST port: static HTML, CSS and JavaScript modules embedded in the
// binary (no build step, no Node at run time), which read and operate the
// cluster through the public REST API with the user's API key. The pages
// and the endpoints they use are listed in README.md.
package console
