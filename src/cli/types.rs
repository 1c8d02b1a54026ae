//! `swapvisor types`: what can be used in a config.

use crate::Registry;
use serde_json::json;

use super::EXIT_OK;

pub(super) fn types(registry: &Registry, as_json: bool) -> u8 {
    let sections = [
        ("module", registry.module_types()),
        ("step", registry.step_types()),
        ("trigger", registry.trigger_types()),
        ("plugin", registry.plugin_kinds()),
    ];
    if as_json {
        let listed = |kind: &str, names: &[&str]| {
            names
                .iter()
                .map(|name| json!({"type": name, "contributor": registry.contributor_of(kind, name)}))
                .collect::<Vec<_>>()
        };
        let out = json!({
            "moduleTypes": listed("module", &sections[0].1),
            "stepTypes": listed("step", &sections[1].1),
            "triggerTypes": listed("trigger", &sections[2].1),
            "pluginKinds": listed("plugin", &sections[3].1),
        });
        println!("{out}");
        return EXIT_OK;
    }
    for (kind, names) in &sections {
        println!(
            "{kind} {}:",
            if *kind == "plugin" { "kinds" } else { "types" }
        );
        for name in names {
            let contributor = registry.contributor_of(kind, name).unwrap_or("?");
            println!("  {name:<22} ({contributor})");
        }
    }
    EXIT_OK
}
