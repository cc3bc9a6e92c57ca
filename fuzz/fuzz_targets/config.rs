//! The configuration parser: any text gives a config or a ConfigError, never a panic; a
//! config that parses survives a print/parse round trip with the same fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obscura::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = obscura::config::parse_duration(text);
    if let Ok(cfg) = Config::parse(text) {
        let fp = cfg.fingerprint();
        let printed = toml_print(&cfg);
        let again = Config::parse(&printed).expect("a printed config parses again");
        assert_eq!(again.fingerprint(), fp, "round trip changed the settings");
    }
});

fn toml_print(cfg: &Config) -> String {
    toml::to_string(cfg).expect("a parsed config prints")
}
