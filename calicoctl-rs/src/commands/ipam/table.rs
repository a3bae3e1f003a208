//! The ASCII tables `calicoctl ipam show` and `node status` print: olekukonko/tablewriter
//! v0.0.5 defaults (`+---+` borders, a space of padding, headers centred, cells that look
//! like numbers right-aligned, others left-aligned), and Go's `%.5g`.

/// Renders a bordered table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            let longest = cell.lines().map(|l| l.chars().count()).max().unwrap_or(0);
            widths[i] = widths[i].max(longest);
        }
    }
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = line.clone();
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            "| {}{}{} ",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&line);
    for row in rows {
        // A cell holding several lines (a wrapped INFO) makes the row several lines tall.
        let height = row
            .iter()
            .map(|c| c.lines().count().max(1))
            .max()
            .unwrap_or(1);
        for line in 0..height {
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).and_then(|c| c.lines().nth(line)).unwrap_or("");
                let pad = " ".repeat(w - cell.chars().count());
                if looks_numeric(cell) {
                    out.push_str(&format!("| {pad}{cell} "));
                } else {
                    out.push_str(&format!("| {cell}{pad} "));
                }
            }
            out.push_str("|\n");
        }
    }
    if !rows.is_empty() {
        out.push_str(&line);
    }
    out
}

/// tablewriter's `decimal` / `percent` patterns: an optionally signed integer (plain or
/// with thousands commas) with an optional fraction, or such a number followed by `%`.
fn looks_numeric(cell: &str) -> bool {
    let s = cell.trim();
    let s = s.strip_suffix('%').unwrap_or(s);
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_ok = !int.is_empty()
        && (int.chars().all(|c| c.is_ascii_digit())
            || int.split(',').enumerate().all(|(i, g)| {
                g.chars().all(|c| c.is_ascii_digit())
                    && if i == 0 {
                        (1..=3).contains(&g.len())
                    } else {
                        g.len() == 3
                    }
            }));
    int_ok && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

/// Go's `fmt.Sprintf("%.5g", v)`.
pub fn g5(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{v:.4e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..5).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = usize::try_from(4 - exp).unwrap_or(0);
    trim_zeros(&format!("{v:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Go's `fmt.Sprintf("%.f", v)` (round half to even).
pub fn pct(v: f64) -> String {
    format!("{v:.0}")
}

/// tablewriter's default word wrap: cells longer than 30 characters are broken at spaces
/// into lines of at most 30 (a single longer word stays whole).
pub fn wrap(cell: &str) -> String {
    const MAX: usize = 30;
    if cell.chars().count() <= MAX {
        return cell.to_string();
    }
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in cell.split_whitespace() {
        let extra = if current.is_empty() { 0 } else { 1 };
        if !current.is_empty() && current.chars().count() + extra + word.chars().count() > MAX {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g_matches_go() {
        assert_eq!(g5(65536.0), "65536");
        assert_eq!(g5(64.0), "64");
        assert_eq!(g5(1.2089258196146292e24), "1.2089e+24");
        assert_eq!(g5(16777216.0), "1.6777e+07");
        assert_eq!(g5(99999.5), "1e+05");
        assert_eq!(g5(0.5), "0.5");
        assert_eq!(pct(100.0 * 5.0 / 65536.0), "0");
        assert_eq!(pct(100.0 * 59.0 / 64.0), "92");
        assert_eq!(pct(12.5), "12");
    }

    #[test]
    fn renders_like_tablewriter() {
        let got = render(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &[
                vec![
                    "IP Pool".into(),
                    "10.65.0.0/16".into(),
                    "65536".into(),
                    "5 (0%)".into(),
                    "65531 (100%)".into(),
                ],
                vec![
                    "Block".into(),
                    "10.65.79.0/26".into(),
                    "64".into(),
                    "5 (8%)".into(),
                    "59 (92%)".into(),
                ],
                vec![
                    "IP Pool".into(),
                    "fd5f:abcd:64::/48".into(),
                    "1.2089e+24".into(),
                    "7 (0%)".into(),
                    "1.2089e+24 (100%)".into(),
                ],
            ],
        );
        let want = "\
+----------+-------------------+------------+------------+-------------------+
| GROUPING |       CIDR        | IPS TOTAL  | IPS IN USE |     IPS FREE      |
+----------+-------------------+------------+------------+-------------------+
| IP Pool  | 10.65.0.0/16      |      65536 | 5 (0%)     | 65531 (100%)      |
| Block    | 10.65.79.0/26     |         64 | 5 (8%)     | 59 (92%)          |
| IP Pool  | fd5f:abcd:64::/48 | 1.2089e+24 | 7 (0%)     | 1.2089e+24 (100%) |
+----------+-------------------+------------+------------+-------------------+
";
        assert_eq!(got, want);
    }
}
