//! The one way the CLI lays out rows for people (`keys list`, `status`, `rotate --due`):
//! columns padded to their widest cell, two spaces apart, the last column not padded, every
//! cell escaped.

use std::fmt::Write as _;

/// `rows` under `header` (no header line when `header` is empty), one line each, ending in a
/// newline. Cells are escaped ([`tsrotate::text::escape`]): descriptions, tags, names and
/// messages come from other people (whoever made a key, wrote the configuration or runs the
/// service), and must not drive the terminal.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| tsrotate::text::escape(c).into_owned())
                .collect()
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let lines: Vec<&Vec<String>> = (!header.is_empty())
        .then_some(&header)
        .into_iter()
        .chain(&rows)
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &lines {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in lines {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn columns_fit_their_widest_cell_and_cells_are_escaped() {
        let rows = vec![
            vec!["web".to_owned(), "█░".to_owned(), "ok".to_owned()],
            vec![
                "a-long-name".to_owned(),
                String::new(),
                "x\u{1b}[2J".to_owned(),
            ],
        ];
        assert_eq!(
            render(&["NAME", "", "STATE"], &rows),
            "NAME             STATE\nweb          █░  ok\na-long-name      x\\u{1b}[2J\n"
        );
        assert_eq!(render(&[], &rows[..1]), "web  █░  ok\n");
    }
}
