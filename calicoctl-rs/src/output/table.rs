//! Go's `text/tabwriter` as calicoctl configures it: `NewWriter(os.Stdout, 5, 1, 3, ' ',
//! 0)`. Every cell (the last one too) is terminated by a tab, so every column is padded to
//! max(5, longest cell + 3) characters, trailing spaces included; a blank line follows.

/// Renders `header` and `rows` as calicoctl prints a table (final blank line included).
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 5;
    const PADDING: usize = 3;
    let ncols = header.len();
    let mut widths = vec![MIN_WIDTH; ncols];
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned())
        .collect::<Vec<_>>();
    for row in &all {
        for (i, cell) in row.iter().enumerate().take(ncols) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in &all {
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_calicos_padding() {
        let rows = vec![
            vec!["pool1".to_string(), "192.168.0.0/18".into(), "all()".into()],
            vec![
                "pool2".to_string(),
                "192.168.192.0/19".into(),
                "all()".into(),
            ],
        ];
        let out = render(&["NAME", "CIDR", "SELECTOR"], &rows);
        assert_eq!(
            out,
            "NAME    CIDR               SELECTOR   \n\
             pool1   192.168.0.0/18     all()      \n\
             pool2   192.168.192.0/19   all()      \n\n"
        );
        // Empty columns are still minwidth (5) wide.
        assert_eq!(render(&["A", ""], &[]), format!("A{}\n\n", " ".repeat(9)));
    }
}
