//! The dashboard in a real browser (issue 15): Debian's headless Chromium,
//! driven by chromedriver over the W3C WebDriver HTTP protocol, against a
//! real `swarm serve` and two real `swarm drone` processes (stand-in
//! builder) on 127.0.0.1.
//!
//! The page loads and shows the drones and the queue; the event stream
//! (pushed by the server) shows a build finishing; a failed build's log
//! opens from the Builds tab; a click on "Pause the farm" with the admin
//! token pauses the farm (checked through the API); in the Releases tab a
//! release is created, diffed against an earlier one, refused by the safety
//! gate, published with an override and a reason, and rolled back (checked
//! through the API and the binhost's Packages index). A package in retry
//! backoff, "fixed", is retried from the Queue tab and built before its
//! backoff would have ended. Screenshots of each
//! step go to `target/screenshots/`, with the measured page weight and time
//! to first render in `target/screenshots/dashboard-metrics.json`.
//!
//! Without chromium/chromedriver this test fails under `CI=true` and skips
//! (with the reason) elsewhere.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{largest_store_file, request, swarm_bin, Server};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The failing package: its log must open in the Builds tab.
const BAD: &str = "=dev-libs/broken-1.0";
/// Fails while listed in the stand-in's fail file (`fail-list` in the test
/// dir), then is "fixed" and retried from the Queue tab.
const FLAKY: &str = "=dev-libs/flaky-1.0";
/// What the page weighed and when it first painted (Navigation/Paint Timing).
const PERF: &str = "const nav = performance.getEntriesByType('navigation')[0];
    const assets = performance.getEntriesByType('resource').filter((r) => r.name.includes('/ui/'));
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    return {
      transferred_bytes: nav.transferSize + assets.reduce((a, r) => a + r.transferSize, 0),
      decoded_bytes: nav.decodedBodySize + assets.reduce((a, r) => a + r.decodedBodySize, 0),
      requests: assets.length + 1,
      first_contentful_paint_ms: paint ? paint.startTime : null,
      dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    };";

/// Whether the browser is here; under CI its absence is a failure.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: install Debian's chromium and chromium-driver"
        );
        eprintln!("SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)");
    }
    present
}

/// A child process killed (with its group) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_drone(server: &Server, dir: &Path, name: &str) -> Proc {
    start_drone_with(server, dir, name, &[])
}

/// [`start_drone`] with more `swarm drone` options (`--env-command ...`).
fn start_drone_with(server: &Server, dir: &Path, name: &str, more: &[&str]) -> Proc {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).expect("work dir");
    let config = dir.join("empty.toml");
    std::fs::write(&config, "").expect("config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(swarm_bin())
        .args(["drone", "--server", &server.url, "--name", name])
        .args(["--machine-id", &format!("browser-test-{name}")])
        .args([
            "--builder",
            "standin",
            "--heartbeat-s",
            "1",
            "--poll-s",
            "1",
        ])
        .args(["--min-free-disk", "64MiB"])
        .args(["--kill-grace-s", "1", "--config"])
        .arg(&config)
        .arg("--work-dir")
        .arg(&work)
        .arg("--pkgdir")
        .arg(work.join("pkgdir"))
        .arg("--portage-timestamp-file")
        .arg(dir.join("no-timestamp"))
        .args(more)
        .env_remove("SWARM_URL")
        .env_remove("SWARM_DRONE_TOKEN")
        .env_remove("SWARM_CONFIG")
        .env("SWARM_LOG", "info")
        .env("SWARM_STANDIN_SCALE_MS", "200")
        .env("SWARM_STANDIN_FAIL", BAD)
        .env("SWARM_STANDIN_FAIL_FILE", dir.join("fail-list"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn swarm drone");
    Proc(child)
}

/// A WebDriver session on a chromedriver of our own.
struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    shots: PathBuf,
    _driver: Proc,
}

impl Browser {
    fn start(shots: &Path, profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver = Proc(driver);
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let v: Value = agent
            .post(&format!("{base}/session"))
            .send_json(caps)
            .expect("new WebDriver session")
            .into_json()
            .expect("session json");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        std::fs::create_dir_all(shots).expect("screenshot dir");
        Browser {
            base,
            session,
            agent,
            shots: shots.to_path_buf(),
            _driver: driver,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = self.agent.request(method, &url);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("{code} {}", r.into_string().unwrap_or_default()))
            }
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = resp.into_json().expect("WebDriver json");
        Ok(v["value"].clone())
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// A real click (the browser's own input path, not `el.click()`). A
    /// view redrawn by a live refresh between finding and clicking is found
    /// again (a few times at most).
    fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css);
            match self.try_call("POST", &format!("/element/{id}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("WebDriver click {css}: {e}"),
            }
        }
        panic!("WebDriver click {css}: the element kept being replaced");
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Polls `script` (an expression) until it is truthy; its value.
    fn wait(&self, secs: u64, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.js(&format!("return ({script});"));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() >= deadline {
                self.shot(&format!("timeout-{}", what.replace(' ', "-")));
                let text = self.js("return document.body.innerText.slice(0, 3000);");
                panic!("timed out waiting for {what}; page text: {text}");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Opens a new tab and makes it the current one (the others are hidden).
    fn new_tab(&self) -> String {
        let v = self.call("POST", "/window/new", Some(json!({"type": "tab"})));
        let handle = v["handle"].as_str().expect("tab handle").to_string();
        self.switch_to(&handle);
        handle
    }

    fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({ "handle": handle })));
    }

    fn shot(&self, name: &str) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot base64");
        std::fs::write(self.shots.join(format!("dashboard-{name}.png")), png).expect("write png");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.agent.delete(&url).call();
    }
}

/// A server with a browser on it, for the tests that need nothing else (dropped browser first).
struct Farm {
    browser: Browser,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Farm {
    /// `None` where Chromium is missing (and not under CI, where that fails).
    fn open(env: &[(&str, &str)]) -> Option<Farm> {
        if !browser_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("dir");
        let server = Server::start(&dir.path().join("data"), env);
        let browser = Browser::start(&screenshots_dir(), &dir.path().join("chromium-profile"));
        Some(Farm {
            browser,
            server,
            _dir: dir,
        })
    }
}

fn screenshots_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("screenshots")
}

/// The binhost's top Packages index as clients fetch it, None before any publish.
fn binhost_index(server: &Server) -> Option<String> {
    match ureq::get(&format!("{}/binhost/Packages", server.url)).call() {
        Ok(r) => Some(r.into_string().expect("index text")),
        Err(ureq::Error::Status(404, _)) => None,
        Err(e) => panic!("GET /binhost/Packages: {e}"),
    }
}

/// Waits until the server says `name` is the published release.
fn wait_published(server: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = server.get("/api/v1/releases");
        if v["published"] == json!(name) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} was not published: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn enqueue(server: &Server, atoms: &[&str]) {
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
}

#[test]
fn the_dashboard_shows_the_farm_streams_events_opens_logs_and_pauses() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    std::fs::write(dir.path().join("fail-list"), format!("{FLAKY}\n")).expect("fail list");
    let _alpha = start_drone(&server, dir.path(), "drone-alpha");
    let _beta = start_drone(&server, dir.path(), "drone-beta");
    server.wait_for(20, "two drones online", |s| s["nodes_online"] == 2);
    enqueue(
        &server,
        &[
            BAD,
            "=dev-libs/alpha-1.0",
            "=sys-apps/beta-2.0",
            "=app-misc/gamma-3",
        ],
    );
    // The failed build's log must be stored before the Builds tab can open it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = server.get("/api/v1/logs?package=dev-libs/broken-1.0");
        let logged = v["builds"].as_array().is_some_and(|b| {
            b.iter()
                .any(|b| b["outcome"] == "failed" && b["log_bytes"].is_u64())
        });
        if logged {
            break;
        }
        assert!(Instant::now() < deadline, "no failed build with a log: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Release r1: what staging holds now (the three good builds), made
    // through the real server before the late build below lands in staging.
    server.wait_for(30, "three good builds", |s| s["counts"]["built"] == 3);
    let (code, v) = server.admin_post("/api/v1/releases", &json!({ "name": "r1" }));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["release"]["packages"], json!(3), "{v}");

    let shots = screenshots_dir();
    let browser = Browser::start(&shots, &dir.path().join("chromium-profile"));

    // 1. The page loads: measure what it weighs and when it first paints.
    browser.goto(&format!("{}/", server.url));
    browser.wait(
        15,
        "the overview",
        "document.querySelector('#count-built .n')",
    );
    browser.wait(
        10,
        "charts",
        "document.querySelectorAll('.uplot').length >= 3",
    );
    // The first load pays for a cold browser; measure a second one too.
    let perf_cold = browser.js(PERF);
    browser.goto(&format!("{}/", server.url));
    browser.wait(
        15,
        "the overview again",
        "document.querySelector('#count-built .n')",
    );
    let perf = browser.js(PERF);
    let perf = json!({"cold": perf_cold, "warm": perf});
    eprintln!("dashboard page: {perf}");
    std::fs::write(
        shots.join("dashboard-metrics.json"),
        serde_json::to_string_pretty(&perf).expect("json"),
    )
    .expect("write metrics");
    assert!(
        perf["cold"]["transferred_bytes"]
            .as_u64()
            .is_some_and(|b| b > 10_000),
        "the page and its assets were transferred: {perf}"
    );
    browser.shot("1-overview");

    // 2. The drones and the queue.
    browser.goto(&format!("{}/#fleet", server.url));
    browser.wait(
        15,
        "both drones in the fleet",
        "[...document.querySelectorAll('.drone-name')].map((e) => e.textContent).sort().join(',') === 'drone-alpha,drone-beta'",
    );
    browser.shot("2-fleet");
    browser.goto(&format!("{}/#queue", server.url));
    browser.wait(
        15,
        "the queue",
        "document.querySelector('tr[data-atom=\"=dev-libs/alpha-1.0\"]') && document.querySelector('tr[data-atom=\"=dev-libs/broken-1.0\"]')",
    );
    browser.shot("3-queue");
    // A fragment naming an inherited property is no view: the overview.
    browser.goto(&format!("{}/#__proto__", server.url));
    browser.wait(
        15,
        "the overview for #__proto__",
        "document.querySelector('#count-built .n')",
    );

    // 3. The event stream: a build queued after the page loaded finishes,
    // and the Events tab shows it without a reload.
    browser.goto(&format!("{}/#events", server.url));
    browser.wait(
        10,
        "the stream to be live",
        "document.getElementById('live').dataset.live === 'true'",
    );
    let before = browser.js("return document.querySelectorAll('#events-list li').length;");
    enqueue(&server, &["=net-misc/late-1.0"]);
    browser.wait(
        30,
        "the late build's built event",
        "[...document.querySelectorAll('#events-list li[data-kind=\"built\"]')].some((li) => li.textContent.includes('=net-misc/late-1.0'))",
    );
    let navigations = browser.js("return performance.getEntriesByType('navigation').length;");
    assert_eq!(navigations, json!(1), "the page was not reloaded");
    eprintln!("events before the late build: {before}");
    browser.shot("4-events");
    // Opened directly (a reload, a bookmark), the tab draws the history that arrives after it
    // mounts (h30: it stayed empty until another tab and back).
    browser.js("window.beforeReload = true; location.reload(); return true;");
    browser.wait(
        15,
        "the events history drawn in a reloaded #events",
        "!window.beforeReload && document.querySelectorAll('#events-list li[data-kind=\"built\"]').length > 0",
    );

    // 4. The failed build's log opens.
    browser.goto(&format!("{}/#builds", server.url));
    browser.wait(
        15,
        "the failed build's row",
        "document.querySelector('tr.fail[data-package=\"=dev-libs/broken-1.0\"] button.open-log')",
    );
    browser.click("tr.fail[data-package=\"=dev-libs/broken-1.0\"] button.open-log");
    let log = browser.wait(
        15,
        "the log text",
        "document.querySelector('pre#log-text') && document.querySelector('pre#log-text').textContent",
    );
    let log = log.as_str().unwrap_or_default().to_string();
    assert!(
        log.contains("stand-in failure requested by SWARM_STANDIN_FAIL"),
        "the log shows the builder's error: {log}"
    );
    browser.shot("5-build-log");

    // 5. Pause: without the token the server refuses; with it the farm pauses.
    browser.goto(&format!("{}/#overview", server.url));
    browser.wait(
        15,
        "the control panel",
        "document.getElementById('control-pause')",
    );
    assert_eq!(
        browser.js("return document.getElementById('token-form').hidden;"),
        json!(true),
        "the token form is closed until something needs the token"
    );
    browser.click("#control-pause");
    // The refusal shows a notice for 9 s and opens the token form, which stays open: on a
    // loaded machine the notice can come and go between two polls, the form cannot.
    browser.wait(30, "the refusal", "(!document.getElementById('notice').hidden && document.getElementById('notice').textContent.includes('failed')) || !document.getElementById('token-form').hidden");
    assert_eq!(server.get("/api/v1/status").1["paused"], json!(false));
    // The refusal opened the token form; the button opens it otherwise.
    if browser.js("return document.getElementById('token-form').hidden;") == json!(true) {
        browser.click("#token-button");
    }
    browser.type_into("#token-input", &server.token());
    browser.click("#token-form button[type=submit]");
    let kept = browser
        .js("return [sessionStorage.getItem('swarm.adminToken'), location.href, document.cookie];");
    assert_eq!(
        kept[0],
        json!(server.token()),
        "the token is kept in sessionStorage"
    );
    assert!(
        !kept[1]
            .as_str()
            .unwrap_or_default()
            .contains(&server.token())
            && kept[2] == json!(""),
        "the token is in no URL and no cookie: {kept}"
    );
    browser.click("#control-pause");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/api/v1/status").1["paused"] != json!(true) {
        assert!(
            Instant::now() < deadline,
            "the click did not pause the farm"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.wait(
        10,
        "the paused badge",
        "document.getElementById('farm-state').dataset.paused === 'true'",
    );
    browser.shot("6-paused");

    // Block the failed package from the Queue tab, then retry it there (the
    // core's `retry`: unblocked, its failures forgotten, no backoff).
    let item = |atom: &str| {
        let (_, q) = server.get("/api/v1/queue?limit=1000");
        q["items"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["atom"] == atom).cloned())
            .unwrap_or_else(|| panic!("{atom} is not queued: {q}"))
    };
    assert!(item(BAD)["attempts"].as_u64() > Some(0), "{}", item(BAD));
    browser.goto(&format!("{}/#queue", server.url));
    let row = format!("tr[data-atom=\"{BAD}\"]");
    browser.wait(
        10,
        "the failed package's row",
        &format!("document.querySelector('{row} button.danger')"),
    );
    browser.click(&format!("{row} button.danger"));
    browser.wait(
        10,
        "the blocked package's retry button",
        &format!("document.querySelector('{row} button[data-retry]') && !document.querySelector('{row} button.danger')"),
    );
    assert_eq!(
        item(BAD)["status"]["state"],
        json!("blocked"),
        "{}",
        item(BAD)
    );
    browser.click(&format!("{row} button[data-retry]"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while item(BAD)["status"]["state"] != json!("queued") {
        assert!(Instant::now() < deadline, "not retried: {}", item(BAD));
        std::thread::sleep(Duration::from_millis(100));
    }
    let retried = item(BAD);
    assert_eq!(retried["attempts"], json!(0), "{retried}");
    assert!(retried["status"]["retry_at"].is_null(), "{retried}");

    // 6. Releases: r2 is created in the browser (it adds the late build);
    // the diff r1 → r2 shows it; publishing meets the safety gate (the
    // failed package is missing from both), whose refusal is shown and
    // overridden with a reason; then a rollback. What clients would install
    // (the binhost's top Packages) is checked at each step, not the page.
    browser.goto(&format!("{}/#releases", server.url));
    browser.wait(
        10,
        "the release r1",
        "document.querySelector('tr[data-release=\"r1\"]')",
    );
    browser.type_into("#release-create-name", "r2");
    browser.click("#release-create");
    browser.wait(
        15,
        "the release r2",
        "document.querySelector('tr[data-release=\"r2\"]')",
    );
    let (_, list) = server.get("/api/v1/releases");
    assert_eq!(list["releases"][1]["name"], json!("r2"), "{list}");
    assert_eq!(list["published"], Value::Null, "{list}");
    // Default pair: A = r1, B = r2.
    browser.click("#release-diff-run");
    let added = browser.wait(
        10,
        "the diff",
        "document.getElementById('release-diff') && [...document.querySelectorAll('#diff-added li')].map((l) => l.dataset.cpv).join(',')",
    );
    assert_eq!(added, json!("net-misc/late-1.0"), "r2 adds the late build");
    assert_eq!(
        browser.js("return [document.getElementById('release-diff').dataset.unchanged, document.querySelectorAll('#diff-removed li, #diff-changed li').length];"),
        json!(["3", 0])
    );
    browser.shot("7-release-diff");

    // Publish r1: refused, with the gate's reasons; nothing is published.
    browser.click("button[data-publish=\"r1\"]");
    let reasons = browser.wait(
        10,
        "the gate's refusal",
        "document.getElementById('release-refusal') && document.getElementById('refusal-reasons').textContent",
    );
    assert!(
        reasons
            .as_str()
            .unwrap_or_default()
            .contains("dev-libs/broken-1.0"),
        "the refusal names the missing package: {reasons}"
    );
    assert_eq!(server.get("/api/v1/releases").1["published"], Value::Null);
    assert_eq!(binhost_index(&server), None, "nothing published yet");
    browser.shot("8-release-refused");
    // An override without a reason is not sent.
    browser.click("#force-publish");
    browser.wait(
        5,
        "the request for a reason",
        "document.getElementById('notice').textContent.includes('needs a reason')",
    );
    assert_eq!(server.get("/api/v1/releases").1["published"], Value::Null);
    browser.type_into(
        "#force-reason",
        "browser test: the broken package is expected to fail",
    );
    browser.click("#force-publish");
    wait_published(&server, "r1");
    let index = binhost_index(&server).expect("a published index");
    assert!(
        index.contains("CPV: dev-libs/alpha-1.0") && !index.contains("CPV: net-misc/late-1.0"),
        "{index}"
    );
    // Publish r2 the same way: the index now offers the late build.
    browser.wait(
        10,
        "r1 marked published",
        "document.getElementById('release-published').dataset.name === 'r1'",
    );
    browser.click("button[data-publish=\"r2\"]");
    browser.wait(
        10,
        "the refusal for r2",
        "document.querySelector('#release-refusal[data-release=\"r2\"]')",
    );
    browser.type_into("#force-reason", "browser test: second release");
    browser.click("#force-publish");
    wait_published(&server, "r2");
    assert!(binhost_index(&server)
        .expect("index")
        .contains("CPV: net-misc/late-1.0"));
    // Roll back: r1 again, named on the button.
    let label = browser.wait(
        10,
        "the rollback button",
        "!document.getElementById('release-rollback').disabled && document.getElementById('release-rollback').textContent",
    );
    assert_eq!(label, json!("Roll back to r1"));
    browser.click("#release-rollback");
    wait_published(&server, "r1");
    let index = binhost_index(&server).expect("index");
    assert!(
        !index.contains("CPV: net-misc/late-1.0") && index.contains("CPV: dev-libs/alpha-1.0"),
        "{index}"
    );
    browser.wait(
        10,
        "r1 shown as published again",
        "document.getElementById('release-published').dataset.name === 'r1'",
    );
    // Keep and tag r1.
    browser.click("button[data-keep=\"r1\"]");
    browser.click("button[data-tag-open=\"r1\"]");
    browser.type_into("#release-tag-input", "known-good");
    browser.click("#release-tag-add");
    browser.wait(
        10,
        "the tag",
        "document.querySelector('tr[data-release=\"r1\"] [data-tag=\"known-good\"]')",
    );
    let (_, list) = server.get("/api/v1/releases");
    assert_eq!(list["releases"][0]["kept"], json!(true), "{list}");
    assert_eq!(list["releases"][0]["tags"], json!(["known-good"]), "{list}");
    // Every action is an event, the override with its reason.
    let (_, ev) = server.get("/api/v1/events/history?limit=200");
    let text = ev.to_string();
    assert!(
        text.contains("gate_overridden") && text.contains("the broken package is expected to fail"),
        "{ev}"
    );
    assert!(text.contains("rolled_back"), "{ev}");
    browser.shot("9-release-rolled-back");

    // 7. Retry: a package that failed once waits out its backoff (a minute);
    // once "fixed", a click on Retry now has it built at once.
    let (code, v) = server.admin_post("/api/v1/control", &json!({ "action": "resume" }));
    assert_eq!(code, 200, "{v}");
    enqueue(&server, &[FLAKY]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let it = item(FLAKY);
        if it["attempts"].as_u64() >= Some(1) && it["status"]["retry_at"].is_u64() {
            break it;
        }
        assert!(Instant::now() < deadline, "{FLAKY} did not fail: {it}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let retry_at = waiting["status"]["retry_at"].as_u64().unwrap_or_default();
    std::fs::write(dir.path().join("fail-list"), "").expect("fix the package");
    browser.goto(&format!("{}/#queue", server.url));
    let row = format!("tr[data-atom=\"{FLAKY}\"]");
    browser.wait(
        10,
        "the retry button of the package in backoff",
        &format!("document.querySelector('{row} button[data-retry]')"),
    );
    browser.shot("10-retry-backoff");
    browser.click(&format!("{row} button[data-retry]"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let built = loop {
        let it = item(FLAKY);
        if it["status"]["state"] == json!("built") {
            break it;
        }
        assert!(
            Instant::now() < deadline,
            "{FLAKY} was not built after the retry: {it}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let built_at = built["status"]["at"].as_u64().unwrap_or(u64::MAX);
    assert!(
        built_at < retry_at,
        "built at {built_at}, before its backoff ended at {retry_at}: {built}"
    );
    let (_, ev) = server.get("/api/v1/events/history?limit=500");
    assert!(
        ev.to_string().contains(&format!("retrying {FLAKY} now")),
        "the retry is an event: {ev}"
    );
    browser.wait(
        15,
        "the package shown built",
        &format!("document.querySelector('{row}') && document.querySelector('{row}').textContent.includes('built')"),
    );
    browser.shot("11-retried-built");

    // The drones stay registered through all of it.
    let (code, nodes) = request(
        "GET",
        &format!("{}/api/v1/nodes?all=true", server.url),
        None,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
}

#[test]
fn the_profiles_panel_shows_each_target_and_each_drone_says_what_it_serves_or_what_differs() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    std::fs::write(dir.path().join("fail-list"), "").expect("fail list");
    let drones: Vec<Proc> = [
        ("drone-lean", "-O2"),
        ("drone-fast", "-O3"),
        // A right-to-left override in a value would turn the text after it around (h30 F8).
        ("drone-odd", "-Os\u{202E}"),
    ]
    .iter()
    .map(|(name, cflags)| {
        let env = format!("echo CFLAGS={cflags}");
        start_drone_with(&server, dir.path(), name, &["--env-command", &env])
    })
    .collect();
    server.wait_for(20, "three drones reporting CFLAGS", |_| {
        let (_, nodes) = server.get("/api/v1/nodes?all=true");
        nodes
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|d| d["env"]["CFLAGS"].is_string()))
    });
    let control = |body: Value| {
        let (code, v) = server.admin_post("/api/v1/control", &body);
        assert_eq!(code, 200, "{v}");
    };
    control(
        json!({"action": "set_profile", "profile": "lean", "env": {"CFLAGS": "-O2"},
                   "world": ["dev-libs/lean", "app-misc/hello"]}),
    );
    control(json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3"}}));
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/lean-1.0"], "profile": "lean"}),
    );
    assert_eq!(code, 200, "{v}");
    server.wait_for(30, "lean's package built", |s| s["counts"]["built"] == 1);
    let (code, v) = server.admin_post("/api/v1/releases?profile=lean", &json!({"name": "lean-1"}));
    assert_eq!(code, 201, "{v}");
    // The default profile expects -O2 now: drone-odd (-Os) matches no profile at all.
    control(json!({"action": "expect_env", "env": {"CFLAGS": "-O2"}}));

    let shots = screenshots_dir();
    let browser = Browser::start(&shots, &dir.path().join("chromium-profile"));
    browser.goto(&format!("{}/#profiles", server.url));
    let row = |p: &str| format!("document.querySelector('tr[data-profile=\"{p}\"]')");
    let lean = browser.wait(
        15,
        "lean's row with its release",
        &format!(
            "{r} && {r}.querySelector('.latest .mono') && {r}.textContent",
            r = row("lean")
        ),
    );
    let lean = lean.as_str().unwrap_or_default().to_owned();
    for want in [
        "/binhost/lean/",
        "1 variable",
        "0 queued · 0 building · 1 built · 0 blocked",
        "drone-lean",
        "lean-1",
        "none published",
    ] {
        assert!(lean.contains(want), "lean's row has {want:?}: {lean}");
    }
    assert_eq!(
        browser.js(&format!(
            "return {}.querySelector('.world').textContent;",
            row("lean")
        )),
        json!("2"),
        "lean's world set"
    );
    let fast = browser.js(&format!("return {}.textContent;", row("fast")));
    let fast = fast.as_str().unwrap_or_default();
    assert!(
        fast.contains("/binhost/fast/") && fast.contains("drone-fast") && fast.contains("none"),
        "fast: its drone, no release: {fast}"
    );
    browser.shot("12-profiles");

    browser.goto(&format!("{}/#fleet", server.url));
    browser.wait(
        15,
        "what each drone serves",
        "document.querySelector('.serves[data-serves=\"default,lean\"]') && document.querySelector('.serves[data-serves=\"fast\"]')",
    );
    let differs = browser.wait(
        15,
        "what differs on drone-odd",
        "document.querySelector('.differs') && document.querySelector('.differs').textContent",
    );
    assert_eq!(
        differs,
        json!("differs from default in CFLAGS (-Os\u{27E8}U+202E\u{27E9} vs -O2)"),
        "drone-odd's row, the override shown as its code point"
    );
    assert_eq!(
        browser.js("return document.querySelector('.env-drift').title;"),
        json!("CFLAGS (-Os\u{27E8}U+202E\u{27E9} vs -O2)"),
        "the badge's title"
    );
    browser.shot("13-fleet-profiles");

    // One atom queued for two profiles (the swarm paused, so it stays queued) is two rows in
    // the Queue tab, and each row's actions name its own profile.
    control(json!({"action": "pause"}));
    let both = "=dev-libs/both-1.0";
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": [both, {"atom": both, "profile": "fast"}]}),
    );
    assert_eq!(code, 200, "{v}");
    browser.js(&format!(
        "sessionStorage.setItem('swarm.adminToken', {}); return true;",
        json!(server.token())
    ));
    browser.goto(&format!("{}/#queue", server.url));
    let row = |p: &str| format!("tr[data-atom=\"{both}\"][data-profile=\"{p}\"]");
    browser.wait(
        15,
        "a row per profile",
        &format!(
            "document.querySelector('{}') && document.querySelector('{}')",
            row("default"),
            row("fast")
        ),
    );
    browser.click(&format!("{} button.danger", row("fast")));
    let state = |profile: &str| {
        let (_, q) = server.get("/api/v1/queue?limit=100");
        q["items"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| {
                        i["atom"] == both && i["profile"].as_str().unwrap_or("default") == profile
                    })
                    .map(|i| i["status"]["state"].clone())
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while state("fast") != json!("blocked") {
        assert!(
            Instant::now() < deadline,
            "fast's not blocked: {:?}",
            state("fast")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        state("default"),
        json!("queued"),
        "only fast's row was blocked"
    );
    browser.click(&format!("{} button[data-explain]", row("default")));
    let why = browser.wait(
        10,
        "the default row's explanation",
        &format!(
            "document.querySelector('{} + tr .explain') && document.querySelector('{} + tr .explain').textContent",
            row("default"),
            row("default")
        ),
    );
    assert_eq!(
        why,
        json!("waiting: the swarm is paused"),
        "its own, not both"
    );
    browser.shot("14-queue-two-profiles");
    drop(drones);
}

/// A server whose reads need a token (`read_token`): the page opens its
/// token form, and with the read token typed in it shows the farm and
/// follows the event stream (read with `fetch`, so the token goes with it).
#[test]
fn with_a_read_token_the_dashboard_asks_for_it_then_reads_and_streams() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let read = "read-secret-for-the-browser";
    let server = Server::start(&dir.path().join("data"), &[("SWARM_READ_TOKEN", read)]);
    let shots = screenshots_dir();
    let browser = Browser::start(&shots, &dir.path().join("chromium-profile"));
    browser.goto(&format!("{}/", server.url));
    browser.wait(
        15,
        "the token form, opened by a refused read",
        "!document.getElementById('token-form').hidden",
    );
    browser.type_into("#token-input", read);
    browser.click("#token-form button[type=submit]");
    browser.wait(
        15,
        "the overview",
        "document.querySelector('#count-built .n')",
    );
    browser.wait(
        15,
        "the event stream to be live",
        "document.getElementById('live').dataset.live === 'true'",
    );
    browser.shot("read-token");
}

/// Six dashboard tabs: each held its event stream, and Chromium opens at most six connections
/// to one server over HTTP/1.1, so a fetch in any tab (every button) hung (h30). A hidden tab
/// lets its stream go and takes it up again when shown.
#[test]
fn six_tabs_of_the_dashboard_leave_the_one_in_front_its_requests() {
    let Some(farm) = Farm::open(&[]) else {
        return;
    };
    let (browser, server) = (&farm.browser, &farm.server);
    let live = "document.getElementById('live').dataset.live === 'true'";
    browser.goto(&format!("{}/", server.url));
    browser.wait(15, "the first tab's stream", live);
    let first = browser.call("GET", "/window", None);
    let first = first.as_str().expect("window handle").to_string();
    for i in 1..6 {
        browser.new_tab();
        browser.goto(&format!("{}/#events", server.url));
        browser.wait(15, &format!("tab {i}'s stream"), live);
    }
    browser.switch_to(&first);
    browser.wait(15, "the first tab's stream again", live);
    browser.js(
        "window.statusRead = null; \
         fetch('/api/v1/status', { cache: 'no-store' }).then((r) => { window.statusRead = r.status; }); \
         return true;",
    );
    browser.wait(
        15,
        "a status read from the tab in front",
        "window.statusRead === 200",
    );
}

/// The Queue tab searches the whole queue: it filtered the first 1,000 packages it fetched, so
/// in a queue of 50,000 a queued package was "0 shown" and could not be blocked or retried
/// from the dashboard (h30).
#[test]
fn the_queue_search_finds_a_package_past_the_first_thousand() {
    let Some(farm) = Farm::open(&[]) else {
        return;
    };
    let (browser, server) = (&farm.browser, &farm.server);
    let atoms: Vec<String> = (0..1100)
        .map(|i| format!("=dev-libs/pkg{i:04}-1"))
        .collect();
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.get("/api/v1/queue?q=PKG1099&limit=5");
    assert_eq!((code, &v["total"]), (200, &json!(1)), "{v}");
    let (code, v) = server.get(&format!("/api/v1/queue?q={}", "x".repeat(257)));
    assert_eq!((code, &v["field"]), (400, &json!("q")), "{v}");
    browser.goto(&format!("{}/#queue", server.url));
    browser.wait(
        15,
        "the queue",
        "document.querySelector('#queue-table tbody tr')",
    );
    browser.type_into("#queue-search", "pkg1099");
    browser.wait(
        15,
        "the package past the first 1,000",
        "document.querySelector('tr[data-atom=\"=dev-libs/pkg1099-1\"]') && document.getElementById('queue-count').textContent.startsWith('1 shown')",
    );
}

/// A store that cannot write was told only to monitors (`/api/v1/health`, `/metrics`): the
/// dashboard showed "running" while every input failed. Its header now says the server is
/// unhealthy and a banner gives the reason, until writes work again.
#[test]
fn the_dashboard_says_when_the_store_cannot_write_and_when_it_can_again() {
    let Some(farm) = Farm::open(&[]) else {
        return;
    };
    let (browser, server) = (&farm.browser, &farm.server);
    let state =
        |want: &str| format!("document.getElementById('server-health').dataset.state === '{want}'");
    browser.goto(&format!("{}/", server.url));
    browser.wait(15, "the server's health read as ok", &state("ok"));
    // A fresh server has one point of history: its charts span the last hour, not 1,000 days.
    let span = browser.wait(
        15,
        "the rate chart's x axis",
        "document.getElementById('chart-rate').dataset.xspan",
    );
    let span: f64 = span.as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    assert!((3500.0..=7200.0).contains(&span), "x axis spans {span} s");
    assert_eq!(
        browser.js("return document.getElementById('health-banner').hidden;"),
        json!(true)
    );
    // As on a full disk: a file-size limit just above the store's files fails the next growth.
    server.limit_file_size(Some(largest_store_file(&server.data_dir) + 16 * 1024));
    let refused = (0..400).find_map(|i| {
        let packages: Vec<String> = (0..50).map(|p| format!("dev-libs/p{i}x{p}-1")).collect();
        let (code, _) = server.admin_post("/api/v1/queue", &json!({ "packages": packages }));
        (code != 200).then_some(code)
    });
    assert_eq!(
        refused,
        Some(503),
        "a write failed under the file-size limit"
    );
    browser.wait(
        25,
        "the header to say the server is unhealthy",
        &state("unhealthy"),
    );
    let banner = browser.js(
        "const b = document.getElementById('health-banner'); return b.hidden ? '' : b.textContent;",
    );
    assert!(
        banner.as_str().is_some_and(|t| t.contains("cannot write")),
        "{banner}"
    );
    browser.shot("store-cannot-write");
    server.limit_file_size(None);
    browser.wait(30, "the header to turn back", &state("ok"));
    assert_eq!(
        browser.js("return document.getElementById('health-banner').hidden;"),
        json!(true)
    );
    // A proxy's sign-in page in health's place is no health at all, not "server unhealthy".
    browser.js("const real = window.fetch; \
         window.fetch = (url, init) => String(url).includes('/api/v1/health') \
           ? Promise.resolve(new Response('<html>sign in</html>', { status: 200 })) \
           : real(url, init); \
         return true;");
    browser.wait(
        30,
        "the header to read the page as no health",
        &state("unknown"),
    );
    assert_eq!(
        browser.js("return document.getElementById('health-banner').hidden;"),
        json!(true)
    );
}
