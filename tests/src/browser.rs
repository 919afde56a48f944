//! A real headless Chromium driven over WebDriver, for end-to-end tests of the master's web
//! dashboard: [`Browser::start`] runs Debian's `chromedriver` on a free loopback port with a
//! fresh profile, opens a session with [`fantoccini`], and gives tests a few bounded helpers
//! (go to a page, wait for an element, read, click, fill, take a screenshot).
//!
//! Without Chromium or chromedriver installed the test is skipped with a message, except under
//! `CI=true`, where a missing browser fails the test (`.ci/run` installs both). Dropping a
//! [`Browser`] kills chromedriver, every Chromium process of its profile, and removes the
//! profile, so a failed test leaves nothing running.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Chromium as Debian installs it (`apt-get install chromium`); `HEARTH_CHROMIUM` overrides.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver server (`apt-get install chromium-driver`); `HEARTH_CHROMEDRIVER` overrides.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long [`Browser::text_of`], [`Browser::click`] and [`Browser::fill`] wait for their
/// element to appear (a dashboard renders after its fetches answer).
pub const ELEMENT_WAIT: Duration = Duration::from_secs(10);
/// Window size of a phone (an iPhone 12–15 in CSS pixels), for [`Browser::phone`].
pub const PHONE: (u32, u32) = (390, 844);

/// Limit for chromedriver to answer `/status` as ready.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// Limit for the session to open (chromedriver launching Chromium).
const SESSION_READY: Duration = Duration::from_secs(30);
/// Page loads and scripts: WebDriver's own limits, so no command waits forever.
const PAGE_LOAD_MS: u64 = 30_000;
/// Limit for Chromium's processes to be gone after the kill, before the profile is removed.
const REAP: Duration = Duration::from_secs(5);

/// How to start a [`Browser`]; `Default` is an English-speaking desktop browser.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// The browser's language (`--lang` and `intl.accept_languages`, hence its
    /// `Accept-Language` header and `navigator.language`), e.g. `"fr"`; `None` is Chromium's
    /// default (`en-US`).
    pub lang: Option<String>,
}

impl BrowserOptions {
    /// These options with the browser's language set to `lang` (e.g. `"fr"` or `"fr,en"`).
    pub fn lang(mut self, lang: &str) -> Self {
        self.lang = Some(lang.to_owned());
        self
    }
}

/// A WebDriver session in a headless Chromium of its own; killed with its chromedriver on drop.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    /// Kept for its drop, which kills chromedriver and Chromium and removes the profile.
    _driver: Driver,
    case: String,
}

/// A running chromedriver and its scratch dir; drop kills it, its Chromium, and removes the dir.
#[derive(Debug)]
struct Driver {
    child: Child,
    /// Holds `profile/` (Chromium's user data dir), `home/` (its `HOME`, where its crash
    /// handler keeps its database) and `chromedriver.log`.
    scratch: tempfile::TempDir,
}

impl Browser {
    /// A desktop browser (1280×900, English) for the test `case`, or `None` (after printing
    /// "skipped: …") when Chromium or chromedriver is not installed and `CI` is not `true`.
    ///
    /// # Errors
    /// When the browser is missing under `CI=true`, or chromedriver or Chromium fails to start
    /// within its limit (the error carries chromedriver's log).
    pub async fn start(case: &str) -> Result<Option<Self>> {
        Self::start_with(case, &BrowserOptions::default()).await
    }

    /// Like [`Browser::start`], with `options` (e.g. a language).
    ///
    /// # Errors
    /// As [`Browser::start`].
    pub async fn start_with(case: &str, options: &BrowserOptions) -> Result<Option<Self>> {
        let chromium = tool("HEARTH_CHROMIUM", CHROMIUM);
        let chromedriver = tool("HEARTH_CHROMEDRIVER", CHROMEDRIVER);
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            let how = "install them with `apt-get install chromium chromium-driver` \
                       (or point HEARTH_CHROMIUM and HEARTH_CHROMEDRIVER at them)";
            if std::env::var("CI").as_deref() == Ok("true") {
                bail!(
                    "{case}: {} missing under CI=true: {how}",
                    missing.join(" and ")
                );
            }
            eprintln!(
                "skipped: {case}: {} not found; {how}",
                missing.join(" and ")
            );
            return Ok(None);
        }

        let started = Instant::now();
        let scratch = tempfile::Builder::new()
            .prefix("hearth-browser-")
            .tempdir()
            .context("create the browser's temp dir")?;
        let profile = scratch.path().join("profile");
        fs::create_dir(&profile).context("create the browser profile dir")?;
        fs::create_dir(scratch.path().join("home")).context("create the browser's home dir")?;
        // From here on a failure drops `driver`, which kills chromedriver and its Chromium.
        let (driver, port) = Driver::spawn(&chromedriver, scratch).await?;
        let caps = capabilities(&chromium, &profile, options);
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = match tokio::time::timeout(SESSION_READY, builder.connect(&webdriver)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "{case}: opening a Chromium session failed: {e}\n{}",
                driver.log()
            ),
            Err(_) => bail!(
                "{case}: Chromium did not start within {SESSION_READY:?}\n{}",
                driver.log()
            ),
        };
        eprintln!(
            "{case}: browser ready in {} ms (chromedriver on 127.0.0.1:{port})",
            started.elapsed().as_millis()
        );
        Ok(Some(Self {
            client,
            _driver: driver,
            case: case.to_owned(),
        }))
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits (at most 30 s) for it to load.
    ///
    /// # Errors
    /// When the page does not load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("{}: open {url}", self.case))
    }

    /// Writes a PNG of the window to `<target dir>/screenshots/<name>.png` and returns its
    /// path (`CARGO_TARGET_DIR`, or the workspace's `target/`). Characters of `name` other
    /// than letters, digits, `-`, `_` and `.` become `_`.
    ///
    /// # Errors
    /// When the screenshot cannot be taken or written.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .with_context(|| format!("{}: screenshot {name}", self.case))?;
        let dir = target_dir().join("screenshots");
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{file}.png"));
        fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The first element matching the CSS `selector`, polled every 50 ms for at most
    /// `timeout`.
    ///
    /// # Errors
    /// When nothing matches within `timeout` (the error names the page).
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Result<Element> {
        let found = self
            .client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(selector))
            .await;
        match found {
            Ok(element) => Ok(element),
            Err(e) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map_or_else(|_| "?".to_owned(), |u| u.to_string());
                Err(anyhow!(
                    "{}: no element matches `{selector}` on {url} within {timeout:?}: {e}",
                    self.case
                ))
            }
        }
    }

    /// The rendered text of the first element matching `selector` (waited for at most
    /// [`ELEMENT_WAIT`]), trimmed as WebDriver does.
    ///
    /// # Errors
    /// When no element matches in time or its text cannot be read.
    pub async fn text_of(&self, selector: &str) -> Result<String> {
        let element = self.wait_for(selector, ELEMENT_WAIT).await?;
        element
            .text()
            .await
            .with_context(|| format!("{}: text of `{selector}`", self.case))
    }

    /// Clicks the first element matching `selector` (waited for at most [`ELEMENT_WAIT`]).
    ///
    /// # Errors
    /// When no element matches in time or it cannot be clicked (hidden, covered).
    pub async fn click(&self, selector: &str) -> Result<()> {
        let element = self.wait_for(selector, ELEMENT_WAIT).await?;
        element
            .click()
            .await
            .with_context(|| format!("{}: click `{selector}`", self.case))
    }

    /// Clears the input matching `selector` (waited for at most [`ELEMENT_WAIT`]) and types
    /// `text` into it.
    ///
    /// # Errors
    /// When no element matches in time or it does not take input.
    pub async fn fill(&self, selector: &str, text: &str) -> Result<()> {
        let element = self.wait_for(selector, ELEMENT_WAIT).await?;
        element
            .clear()
            .await
            .with_context(|| format!("{}: clear `{selector}`", self.case))?;
        element
            .send_keys(text)
            .await
            .with_context(|| format!("{}: type into `{selector}`", self.case))
    }

    /// Resizes the window to `width`×`height` CSS pixels.
    ///
    /// # Errors
    /// When WebDriver refuses the size.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.client
            .set_window_size(width, height)
            .await
            .with_context(|| format!("{}: resize to {width}x{height}", self.case))
    }

    /// Resizes the window to a phone's [`PHONE`] size (390×844).
    ///
    /// # Errors
    /// As [`Browser::set_window_size`].
    pub async fn phone(&self) -> Result<()> {
        self.set_window_size(PHONE.0, PHONE.1).await
    }

    /// Ends the WebDriver session (chromedriver quits Chromium), then kills chromedriver and
    /// removes the profile as drop does.
    ///
    /// # Errors
    /// When chromedriver does not end the session; the processes are killed all the same.
    pub async fn close(self) -> Result<()> {
        let ended = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close())
            .await
            .map_err(|_| anyhow!("{}: closing the session took over 10 s", self.case))?;
        ended.with_context(|| format!("{}: close the WebDriver session", self.case))
    }
}

/// `var` from the environment when set, else `default`.
fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

impl Driver {
    /// Starts chromedriver on a free 127.0.0.1 port, logging into `scratch`, and waits until
    /// `/status` says ready; retries with another port when one was taken between the probe
    /// and chromedriver's bind.
    async fn spawn(chromedriver: &Path, scratch: tempfile::TempDir) -> Result<(Self, u16)> {
        let log = scratch.path().join("chromedriver.log");
        let mut last = anyhow!("chromedriver was not started");
        for _ in 0..3 {
            let port = free_port()?;
            let out = fs::File::create(&log).context("create chromedriver.log")?;
            let err = out.try_clone().context("chromedriver.log")?;
            // No `--allowed-ips`: with it (even empty) chromedriver listens on every
            // interface; without it only on loopback (127.0.0.1, and ::1 where the host has
            // it). Our requests carry no `Origin`, so `--allowed-origins` is not needed either.
            // Chromium inherits this environment: with its own `HOME` nothing of it lands in
            // the user's `~/.config` or `~/.cache`, and every process it starts names
            // `scratch` in its arguments (see `processes_using`).
            let home = scratch.path().join("home");
            let mut child = Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .arg("--log-level=WARNING")
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Its own process group, so drop can kill it with whatever it spawned.
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawn {}", chromedriver.display()))?;
            match wait_ready(&mut child, port).await {
                Ok(()) => return Ok((Self { child, scratch }, port)),
                Err(e) => {
                    // No session yet, so no Chromium: the process group is all there is.
                    kill_group(&mut child);
                    let text = fs::read_to_string(&log).unwrap_or_default();
                    last = e.context(format!("chromedriver log:\n{text}"));
                }
            }
        }
        Err(last)
    }

    /// chromedriver's log so far, for error messages.
    fn log(&self) -> String {
        let log =
            fs::read_to_string(self.scratch.path().join("chromedriver.log")).unwrap_or_default();
        format!("chromedriver log:\n{log}")
    }

    /// Kills chromedriver's process group and every process naming the scratch dir, bounded
    /// by [`REAP`].
    fn kill(&mut self) {
        // chromedriver leads its own process group (see `spawn`); Chromium may start one of
        // its own, and its crash handlers do (`setsid`), so its processes are also found by
        // the scratch dir their arguments name.
        kill_group(&mut self.child);
        let deadline = Instant::now() + REAP;
        loop {
            let left = processes_using(self.scratch.path());
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in left {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
        // `scratch` (the profile and the log) is removed when dropped, after this.
    }
}

/// SIGKILLs the process group `child` leads, then reaps `child`.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls chromedriver's `/status` every 50 ms for at most [`DRIVER_READY`].
async fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .context("build an HTTP client")?;
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + DRIVER_READY;
    loop {
        if let Some(status) = child.try_wait().context("chromedriver status")? {
            bail!("chromedriver exited before it was ready ({status})");
        }
        if let Ok(resp) = http.get(&url).send().await
            && let Ok(v) = resp.json::<Value>().await
            && v["value"]["ready"] == Value::Bool(true)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("chromedriver not ready on 127.0.0.1:{port} within {DRIVER_READY:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port free a moment ago (bound on 127.0.0.1:0, then released).
fn free_port() -> Result<u16> {
    let probe = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("bind 127.0.0.1:0")?;
    Ok(probe.local_addr().context("probe address")?.port())
}

/// The session's capabilities: headless Chromium at `chromium`, profile in `profile`.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    options: &BrowserOptions,
) -> fantoccini::wd::Capabilities {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=1280,900".to_owned(),
    ];
    let mut chrome = json!({
        "binary": chromium.display().to_string(),
    });
    if let Some(lang) = &options.lang {
        args.push(format!("--lang={lang}"));
        chrome["prefs"] = json!({ "intl.accept_languages": lang });
    }
    chrome["args"] = json!(args);
    let mut caps = fantoccini::wd::Capabilities::new();
    caps.insert("goog:chromeOptions".to_owned(), chrome);
    caps.insert(
        "timeouts".to_owned(),
        json!({ "pageLoad": PAGE_LOAD_MS, "script": PAGE_LOAD_MS, "implicit": 0 }),
    );
    caps
}

/// The processes (other than this one) with an argument naming `dir` (a fresh temp dir):
/// Chromium's browser, zygote, renderer and utility processes of this browser
/// (`--user-data-dir`), and its crash handlers (`--database`), which leave the process group.
fn processes_using(dir: &Path) -> Vec<Pid> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
                })
                .unwrap_or(false)
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// `CARGO_TARGET_DIR` (relative to the workspace root when relative), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}
