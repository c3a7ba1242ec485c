//! Headless Chromium and Firefox, each started on one URL with a fresh
//! profile in a temp dir, in a process group of its own, with everything
//! that could reach off the machine turned off. Dropping a `RunningBrowser`
//! kills the group and removes the profile.

use std::fs;
use std::path::{Path, PathBuf};

use super::{ProcGroup, TempDir, command_in, require_program};

/// A loopback port nothing listens on (tcpmux, privileged): every proxy
/// setting points here, so a request that is not for loopback fails at once.
const DEAD_PROXY: &str = "127.0.0.1:1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

pub struct RunningBrowser {
    // Field order matters: the group is killed before the profile is removed.
    group: ProcGroup,
    _profile: TempDir,
}

impl RunningBrowser {
    pub fn group(&mut self) -> &mut ProcGroup {
        &mut self.group
    }
}

impl Browser {
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox-esr",
        }
    }

    /// The browser's binary; fails the test when it is not installed.
    pub fn program(self) -> PathBuf {
        match self {
            Browser::Chromium => require_program(&["chromium", "chromium-browser"], "chromium"),
            Browser::Firefox => require_program(&["firefox-esr", "firefox"], "firefox-esr"),
        }
    }

    /// Starts the browser headless on `url`; `program` is what `program()`
    /// found.
    pub fn launch(self, program: &Path, url: &str) -> RunningBrowser {
        let profile = TempDir::new(self.name());
        let home = profile.join("home");
        fs::create_dir(&home).unwrap();
        let log = profile.join("browser.log");
        let mut command = command_in(program, &home);
        match self {
            Browser::Chromium => {
                let data = profile.join("user-data");
                command.args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-domain-reliability",
                    "--disable-breakpad",
                    "--disable-features=Translate,OptimizationHints,MediaRouter",
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                    &format!("--proxy-server=http://{DEAD_PROXY}"),
                    &format!("--user-data-dir={}", data.display()),
                    url,
                ]);
            }
            Browser::Firefox => {
                let data = profile.join("profile");
                fs::create_dir(&data).unwrap();
                fs::write(data.join("user.js"), firefox_prefs()).unwrap();
                command
                    .env("MOZ_CRASHREPORTER_DISABLE", "1")
                    .env("MOZ_HEADLESS", "1")
                    .args(["--headless", "--no-remote", "--profile"])
                    .arg(&data)
                    .arg(url);
            }
        }
        let group = ProcGroup::spawn(self.name(), command, &log);
        RunningBrowser {
            group,
            _profile: profile,
        }
    }
}

/// Firefox preferences: no first-run or welcome pages, no telemetry or
/// studies, no updates, no safe browsing, no captive-portal or connectivity
/// checks, no DNS-over-HTTPS, no prefetching; every proxy at a dead loopback
/// port, loopback exempt. The page is all it loads.
fn firefox_prefs() -> String {
    let (host, port) = DEAD_PROXY.split_once(':').unwrap();
    let dead_server = format!("\"http://{DEAD_PROXY}/\"");
    let mut prefs: Vec<(String, String)> = [
        ("browser.shell.checkDefaultBrowser", "false"),
        ("browser.startup.homepage_override.mstone", "\"ignore\""),
        ("browser.startup.page", "0"),
        ("startup.homepage_welcome_url", "\"\""),
        ("startup.homepage_welcome_url.additional", "\"\""),
        ("startup.homepage_override_url", "\"\""),
        ("browser.aboutwelcome.enabled", "false"),
        ("browser.newtabpage.enabled", "false"),
        ("browser.tabs.warnOnClose", "false"),
        ("browser.sessionstore.resume_from_crash", "false"),
        ("toolkit.startup.max_resumed_crashes", "-1"),
        ("browser.disableResetPrompt", "true"),
        ("datareporting.policy.dataSubmissionEnabled", "false"),
        ("datareporting.policy.firstRunURL", "\"\""),
        ("datareporting.healthreport.uploadEnabled", "false"),
        ("toolkit.telemetry.enabled", "false"),
        ("toolkit.telemetry.unified", "false"),
        ("toolkit.telemetry.archive.enabled", "false"),
        ("toolkit.telemetry.server", "\"\""),
        ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
        ("browser.ping-centre.telemetry", "false"),
        ("app.normandy.enabled", "false"),
        ("app.shield.optoutstudies.enabled", "false"),
        ("app.update.auto", "false"),
        ("app.update.enabled", "false"),
        ("app.update.disabledForTesting", "true"),
        ("app.update.checkInstallTime", "false"),
        ("extensions.update.enabled", "false"),
        ("extensions.getAddons.cache.enabled", "false"),
        ("extensions.blocklist.enabled", "false"),
        ("extensions.systemAddon.update.enabled", "false"),
        ("browser.safebrowsing.malware.enabled", "false"),
        ("browser.safebrowsing.phishing.enabled", "false"),
        ("browser.safebrowsing.downloads.enabled", "false"),
        ("browser.safebrowsing.downloads.remote.enabled", "false"),
        ("browser.safebrowsing.blockedURIs.enabled", "false"),
        ("browser.safebrowsing.provider.google.updateURL", "\"\""),
        ("browser.safebrowsing.provider.google4.updateURL", "\"\""),
        ("browser.safebrowsing.provider.mozilla.updateURL", "\"\""),
        ("network.captive-portal-service.enabled", "false"),
        ("network.connectivity-service.enabled", "false"),
        ("captivedetect.canonicalURL", "\"\""),
        ("network.trr.mode", "5"),
        ("network.dns.disablePrefetch", "true"),
        ("network.prefetch-next", "false"),
        ("network.http.speculative-parallel-limit", "0"),
        ("browser.region.update.enabled", "false"),
        ("browser.region.network.url", "\"\""),
        ("browser.search.update", "false"),
        ("media.gmp-manager.url", "\"\""),
        ("media.gmp-gmpopenh264.enabled", "false"),
        ("services.settings.server", dead_server.as_str()),
        ("browser.topsites.contile.enabled", "false"),
        (
            "browser.newtabpage.activity-stream.feeds.telemetry",
            "false",
        ),
        ("browser.newtabpage.activity-stream.telemetry", "false"),
        ("network.proxy.type", "1"),
        ("network.proxy.share_proxy_settings", "true"),
        ("network.proxy.allow_hijacking_localhost", "false"),
        ("network.proxy.no_proxies_on", "\"localhost, 127.0.0.1\""),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    for kind in ["http", "ssl", "socks"] {
        prefs.push((format!("network.proxy.{kind}"), format!("\"{host}\"")));
        prefs.push((format!("network.proxy.{kind}_port"), port.to_string()));
    }
    prefs
        .iter()
        .map(|(name, value)| format!("user_pref(\"{name}\", {value});\n"))
        .collect()
}
