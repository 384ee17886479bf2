//! Fitting the bar's message to the terminal: a line wider than the terminal wraps, and the
//! next redraw of the bar then leaves its first half behind on every frame. Whole fields are
//! dropped, the least important first, so that no number is ever cut; only a field of words
//! (the status, say a lock's long sentence) is shortened, at a space, when even the most
//! important fields do not fit.

/// One field of the message: its text, how much it matters (a field is dropped before every
/// field that matters more), and whether it is words that may be shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    pub text: String,
    pub weight: u8,
    pub words: bool,
}

impl Field {
    /// A field of figures: kept whole or dropped whole.
    pub fn figures(text: String, weight: u8) -> Field {
        Field {
            text,
            weight,
            words: false,
        }
    }

    /// A field of words, which may be shortened at a space when nothing else can go.
    pub fn words(text: String, weight: u8) -> Field {
        Field {
            text,
            weight,
            words: true,
        }
    }
}

/// Between two fields.
const GAP: &str = "  ";

/// The fields, in their order, two spaces apart, within `room` columns (no limit when the width
/// is unknown): the lightest fields are dropped first; then a field of words is shortened at
/// a space, ending in `…`. The heaviest field is kept even when it alone is wider.
pub(super) fn fit(mut fields: Vec<Field>, room: Option<usize>) -> String {
    let Some(room) = room else {
        return join(&fields);
    };
    while width(&fields) > room && fields.len() > 1 {
        let lightest = (0..fields.len())
            .rev()
            .min_by_key(|&i| fields[i].weight)
            .expect("more than one field");
        if fields[lightest].words {
            // Shortening the words may be enough: try it before they go.
            let others = width(&fields) - columns(&fields[lightest].text);
            if let Some(short) = shorten(&fields[lightest].text, room.saturating_sub(others)) {
                fields[lightest].text = short;
                break;
            }
        }
        fields.remove(lightest);
    }
    join(&fields)
}

fn join(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join(GAP)
}

fn width(fields: &[Field]) -> usize {
    columns(&join(fields))
}

/// Columns on a terminal: every character of the progress line is one column wide.
fn columns(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut at its last space that leaves it, with `…`, within `room` columns; `None` when
/// not even its first word fits.
fn shorten(text: &str, room: usize) -> Option<String> {
    let mut kept = String::new();
    for word in text.split(' ') {
        let next = if kept.is_empty() {
            word.to_owned()
        } else {
            format!("{kept} {word}")
        };
        if columns(&next) + 1 > room {
            break;
        }
        kept = next;
    }
    (!kept.is_empty()).then(|| format!("{}…", kept.trim_end_matches([',', ';', ':'])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Vec<Field> {
        vec![
            Field::figures("1.21M/2.00M rows".into(), 9),
            Field::figures("48.2k rows/s".into(), 6),
            Field::figures("ETA 16s".into(), 7),
            Field::figures("batch 5000".into(), 3),
            Field::figures("heap 149.0 MiB → 171.0 MiB (+15 %)".into(), 1),
            Field::words("running".into(), 8),
        ]
    }

    #[test]
    fn everything_shows_when_it_fits_or_the_width_is_unknown() {
        let all = "1.21M/2.00M rows  48.2k rows/s  ETA 16s  batch 5000  \
                   heap 149.0 MiB → 171.0 MiB (+15 %)  running";
        assert_eq!(fit(line(), None), all);
        assert_eq!(fit(line(), Some(200)), all);
        assert_eq!(fit(line(), Some(all.chars().count())), all);
    }

    #[test]
    fn the_lightest_fields_go_first_whole() {
        assert_eq!(
            fit(line(), Some(60)),
            "1.21M/2.00M rows  48.2k rows/s  ETA 16s  batch 5000  running"
        );
        assert_eq!(
            fit(line(), Some(50)),
            "1.21M/2.00M rows  48.2k rows/s  ETA 16s  running"
        );
        assert_eq!(fit(line(), Some(35)), "1.21M/2.00M rows  ETA 16s  running");
        assert_eq!(fit(line(), Some(5)), "1.21M/2.00M rows");
    }

    #[test]
    fn a_long_reason_is_shortened_at_a_space_not_in_a_number() {
        let fields = vec![
            Field::figures("1.21M/2.00M rows".into(), 9),
            Field::words(
                "paused: pid 41234 holds AccessExclusiveLock on \"public\".\"users\"".into(),
                8,
            ),
        ];
        assert_eq!(
            fit(fields.clone(), Some(50)),
            "1.21M/2.00M rows  paused: pid 41234 holds…"
        );
        assert_eq!(
            fit(fields.clone(), Some(34)),
            "1.21M/2.00M rows  paused: pid…"
        );
        assert_eq!(fit(fields, Some(24)), "1.21M/2.00M rows");
    }
}
