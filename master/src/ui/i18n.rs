//! The dashboard's languages: English, French, Dutch and German. Each page's words come from a
//! catalogue per language (`i18n/<code>.toml`, flat `key = "text"`, `{name}` placeholders),
//! compiled into the binary and parsed once. The language is the `lang` cookie when set (the
//! menu sets it), else the best match of the browser's `Accept-Language`, else English.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English.
    En,
    /// French.
    Fr,
    /// Dutch.
    Nl,
    /// German.
    De,
}

impl Lang {
    /// Every language, in the menu's order.
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Fr, Lang::Nl, Lang::De];

    /// The BCP 47 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Fr => "fr",
            Self::Nl => "nl",
            Self::De => "de",
        }
    }

    /// The language's own name, for the menu.
    pub fn own_name(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Fr => "Français",
            Self::Nl => "Nederlands",
            Self::De => "Deutsch",
        }
    }

    /// The language of a code such as `nl` or `nl-BE`.
    pub fn from_code(code: &str) -> Option<Self> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// The best language of an `Accept-Language` header (highest `q` first; ties in order).
    pub fn from_accept(header: &str) -> Option<Self> {
        let mut best: Option<(f32, Self)> = None;
        for part in header.split(',') {
            let mut fields = part.split(';');
            let Some(lang) = fields.next().and_then(Self::from_code) else {
                continue;
            };
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    fn source(self) -> &'static str {
        match self {
            Self::En => include_str!("i18n/en.toml"),
            Self::Fr => include_str!("i18n/fr.toml"),
            Self::Nl => include_str!("i18n/nl.toml"),
            Self::De => include_str!("i18n/de.toml"),
        }
    }

    /// The text of `key`, or the key itself when no catalogue has it.
    pub fn t(self, key: &str) -> &'static str {
        let all = catalogues();
        all.get(&self)
            .and_then(|c| c.get(key))
            .or_else(|| all.get(&Lang::En).and_then(|c| c.get(key)))
            .map_or("?", |s| s.as_str())
    }

    /// The text of `key` with its `{name}` placeholders filled.
    pub fn f(self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut out = self.t(key).to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), &value.to_string());
        }
        out
    }
}

type Catalogue = HashMap<String, String>;

fn parse(source: &str) -> Result<Catalogue, String> {
    let table: toml::Table = source.parse().map_err(|e| format!("{e}"))?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            other => Err(format!("{k} is a {}, not text", other.type_str())),
        })
        .collect()
}

fn catalogues() -> &'static HashMap<Lang, Catalogue> {
    static ALL: OnceLock<HashMap<Lang, Catalogue>> = OnceLock::new();
    ALL.get_or_init(|| {
        Lang::ALL
            .into_iter()
            .map(|l| {
                let c = parse(l.source()).unwrap_or_else(|e| {
                    tracing::error!(lang = l.code(), error = %e, "dashboard catalogue is damaged");
                    Catalogue::new()
                });
                (l, c)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_catalogue_parses_and_has_every_key_with_the_same_placeholders() {
        let en = parse(Lang::En.source()).unwrap();
        assert!(en.len() > 50);
        let holes = |s: &str| {
            let mut v: Vec<String> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            v.sort();
            v
        };
        for lang in [Lang::Fr, Lang::Nl, Lang::De] {
            let other = parse(lang.source()).unwrap();
            for (k, v) in &en {
                let t = other
                    .get(k)
                    .unwrap_or_else(|| panic!("{} lacks {k}", lang.code()));
                assert_eq!(holes(v), holes(t), "{} {k}", lang.code());
            }
            for k in other.keys() {
                assert!(
                    en.contains_key(k),
                    "{} has {k}, which English lacks",
                    lang.code()
                );
            }
        }
    }

    #[test]
    fn the_browser_language_is_the_best_supported_one() {
        assert_eq!(Lang::from_accept("nl-BE,nl;q=0.9,en;q=0.5"), Some(Lang::Nl));
        assert_eq!(Lang::from_accept("es, de;q=0.8, fr;q=0.9"), Some(Lang::Fr));
        assert_eq!(Lang::from_accept("es, it"), None);
        assert_eq!(Lang::from_accept("fr;q=0, de"), Some(Lang::De));
        assert_eq!(Lang::Fr.f("x", &[]), "?");
    }
}
