//! YAML 1.1 booleans, as calicoctl reads them. calicoctl parses its input with go-yaml v2
//! (through `sigs.k8s.io/yaml`), a YAML 1.1 reader: a plain `yes`, `on`, `y` is `true`
//! and `no`, `off`, `n` is `false`, so `route-reflector: yes` is the label value
//! `"true"` (Calico's confd corpus relies on it: `reachable_by/route_reflectors`,
//! `next_hop_mode/route_reflectors`, `reverse_peering/auto`). serde_yaml_ng is a YAML 1.2
//! reader, where those are strings. This rewrites the plain scalars with a YAML 1.1-only
//! boolean spelling to `true`/`false` before parsing; quoted ones (`'yes'`) stay strings,
//! as in Go.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// go-yaml v2's boolean spellings that YAML 1.2 reads as strings (`true`/`false` and
/// their capitalised forms are booleans in both).
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// `text` with every plain (unquoted, untagged) YAML 1.1-only boolean written as `true` or
/// `false`. Text the scanner cannot read is returned unchanged: the YAML parser then
/// reports the error.
pub fn booleans_as_calico_reads_them(text: &str) -> String {
    let mut spans: Vec<(usize, usize, bool)> = Vec::new();
    let mut parser = Parser::new_from_str(text).keep_tags(true);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Err(_) => return text.to_string(),
            Ok((Event::Scalar(value, TScalarStyle::Plain, _, None), mark)) => {
                let Some(b) = yaml11_bool(&value) else {
                    continue;
                };
                // The marker counts characters, not bytes.
                let Some(start) = byte_offset(text, mark.index()) else {
                    continue;
                };
                // Only where the source holds exactly that word (never guess an offset).
                if text.get(start..start + value.len()) == Some(value.as_str()) {
                    spans.push((start, start + value.len(), b));
                }
            }
            Ok(_) => {}
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + spans.len() * 2);
    let mut at = 0;
    for (start, end, b) in spans {
        out.push_str(&text[at..start]);
        out.push_str(if b { "true" } else { "false" });
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The byte offset of character `chars` of `text`.
fn byte_offset(text: &str, chars: usize) -> Option<usize> {
    if text.is_ascii() {
        return (chars <= text.len()).then_some(chars);
    }
    text.char_indices().nth(chars).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_yaml11_booleans_become_true_and_false_quoted_ones_stay() {
        let text = "labels:\n  route-reflector: yes\n  off-site: 'yes'\n  b: \"no\"\n  \
                    c: On\n  d: n\n  e: yesterday\n  f: !!str yes\n---\nspec: {x: off, z: [Y, no]}\n";
        assert_eq!(
            booleans_as_calico_reads_them(text),
            "labels:\n  route-reflector: true\n  off-site: 'yes'\n  b: \"no\"\n  \
             c: true\n  d: false\n  e: yesterday\n  f: !!str yes\n---\nspec: {x: false, z: [true, false]}\n"
        );
    }

    #[test]
    fn keys_are_read_the_same_way_and_unreadable_text_is_left_alone() {
        // As go-yaml v2: a key spelled `y` or `on` is a boolean too.
        assert_eq!(
            booleans_as_calico_reads_them("yes: 1\ny: 2\n"),
            "true: 1\ntrue: 2\n"
        );
        let broken = "a: [yes\n";
        assert_eq!(booleans_as_calico_reads_them(broken), broken);
        let unicode = "name: \"é\"\nv: yes # comment\n";
        assert_eq!(
            booleans_as_calico_reads_them(unicode),
            "name: \"é\"\nv: true # comment\n"
        );
    }
}
