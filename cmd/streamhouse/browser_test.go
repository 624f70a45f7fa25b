package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser drives a headless Chromium (Debian's chromium package) through
// the DevTools protocol, recording every console error and uncaught
// exception of the page.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string // the agent's REST base URL
	shots string // screenshot directory

	mu   sync.Mutex
	errs []string
}

// chromiumPath finds the browser; a missing one fails the test (make deps
// and .ci/run install it).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install Debian's chromium package (make deps does) or set CHROMIUM")
	return ""
}

// screenshotDir is where the browser tests save their screenshots
// (git-ignored): CONSOLE_SCREENSHOTS, else .cache/screenshots at the
// repository root.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts Chromium on the console of the agent at base (its
// cluster page, not waiting for it: it may ask for a key first).
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, base: base, shots: screenshotDir(t)}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout (see chromedp.Run)
		cancel()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	msgs := chromedp.Console(ctx) // subscribed now, read below
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.record(m)
		}
	}()
	t.Cleanup(func() { cancel(); cancelAlloc(); <-done })
	b.run(chromedp.Navigate(base + "/ui/#/cluster"))
	return b
}

// record keeps the page's errors: console.error calls, uncaught
// exceptions and browser-log errors (such as a failed asset load).
func (b *browser) record(m chromedp.ConsoleMessage) {
	if m.Type != chromedp.ConsoleError && !m.IsException() {
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, m.String())
	b.mu.Unlock()
}

// takeErrors returns and forgets the errors recorded so far.
func (b *browser) takeErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errs
	b.errs = nil
	return e
}

// noErrors fails the test if the page logged errors since the last call.
func (b *browser) noErrors(what string) {
	b.t.Helper()
	if errs := b.takeErrors(); len(errs) > 0 {
		b.t.Errorf("%s: the page logged errors:\n%s", what, strings.Join(errs, "\n"))
	}
}

// run runs actions, bounded by 30 s.
func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// get runs one action that returns a value, bounded by 30 s.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return get(b, chromedp.Evaluate[T](expr))
}

// open shows the console page at hash (e.g. "#/topics") and waits until
// it has rendered.
func (b *browser) open(hash, page string) {
	b.t.Helper()
	eval[string](b, fmt.Sprintf("location.hash = %q", hash))
	b.waitPage(page)
}

func (b *browser) waitPage(page string) {
	b.t.Helper()
	b.run(waitVisible(fmt.Sprintf(`main[data-page=%q][data-ready="true"]`, page)))
}

// text is the text of the first element matching sel (waiting for it).
// text waits until sel is visible and returns its text. A page that
// re-renders between the query and the read replaces the node ("No node
// with given id found"): the read is then asked again.
func (b *browser) text(sel string) string {
	b.t.Helper()
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		switch {
		case err == nil:
			return strings.TrimSpace(v)
		case try < 5 && strings.Contains(err.Error(), "No node with given id found"):
			continue
		}
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
}

// textNow is the text of sel if it exists now ("" otherwise).
func (b *browser) textNow(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
}

// attrNow is attribute name of sel if it exists now ("" otherwise).
func (b *browser) attrNow(sel, name string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {getAttribute: () => ""}).getAttribute(%q) || ""`, sel, name))
}

// count is how many elements match sel now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return eval[int](b, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

// fill replaces the value of the form control sel with v.
func (b *browser) fill(sel, v string) {
	b.t.Helper()
	b.run(waitVisible(sel), chromedp.SetValue(chromedp.CSS(sel), v))
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.run(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// shot saves a full-page screenshot as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	// Top of the page (the sticky header stays on top of the picture), no toasts.
	eval[int](b, "window.scrollTo(0, 0), document.getElementById('toasts').replaceChildren(), 0")
	png := get(b, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// viewport sets the window to a laptop (false) or phone (true) size.
func (b *browser) viewport(phone bool) {
	b.t.Helper()
	if phone {
		b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	} else {
		b.run(chromedp.EmulateViewport(1366, 900))
	}
}

func waitVisible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// setSelect chooses option value of the select sel.
func setSelect(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value)
}
