//! `podtap top`: a live terminal view of the busiest pods, call edges and endpoints, from
//! the running daemon's control socket (`{"request":"top"}`, see `crate::stats::top`).
//!
//! Each refresh is one request on a new connection, as `podtap status` makes: the daemon
//! keeps no state per client, only the earlier samples rates are taken from. Sorting,
//! filtering and the row limit are the daemon's (the rows sent are the top ones of the
//! filtered set); the terminal only draws them, with ratatui.

pub mod view;

use std::io;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::control::ControlError;
use crate::control::client;
use crate::stats::top::{SortKey, TopQuery, TopSnapshot};

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
}

/// What `podtap top --once` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Tables as text.
    Text,
    /// The daemon's snapshot as one JSON object (see docs/CONTROL.md).
    Json,
}

pub struct TopOptions {
    /// The daemon's control socket.
    pub socket: String,
    pub query: TopQuery,
    /// How often the view refreshes.
    pub interval: Duration,
}

/// One snapshot with rates over the whole window asked for: a daemon that has not been
/// asked recently has no earlier sample, so this asks again each second until it has
/// one that old (at most the window and two seconds more).
pub fn once(opts: &TopOptions) -> Result<TopSnapshot, TopError> {
    let want = opts.query.window_secs as f64;
    let give_up = Instant::now() + Duration::from_secs(opts.query.window_secs + 2);
    loop {
        let snap = client::top(&opts.socket, &opts.query)?;
        // Half a second of slack: samples are kept about a second apart.
        if snap.window_secs + 0.5 >= want || Instant::now() >= give_up {
            return Ok(snap);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The live view until `q`, Esc or Ctrl-C. The first request is made before the
/// terminal is taken over, so a missing daemon is an ordinary error message.
pub fn interactive(opts: &TopOptions) -> Result<(), TopError> {
    let first = client::top(&opts.socket, &opts.query)?;
    let mut term = ratatui::try_init()?;
    let mut ui = Ui {
        query: opts.query.clone(),
        snap: Some(first),
        error: None,
        editing: None,
    };
    let r = ui.run(&mut term, opts);
    ratatui::restore();
    r
}

struct Ui {
    query: TopQuery,
    snap: Option<TopSnapshot>,
    /// The last request's failure (the daemon stopped, say): shown, retried.
    error: Option<String>,
    /// The filter being typed after `/`.
    editing: Option<String>,
}

/// The sort keys' keys, as the help line shows them.
const SORT_KEYS: [(char, SortKey); 8] = [
    ('r', SortKey::Rate),
    ('e', SortKey::Errors),
    ('5', SortKey::P50),
    ('9', SortKey::P99),
    ('b', SortKey::Bytes),
    ('t', SortKey::Retransmits),
    ('x', SortKey::Resets),
    ('n', SortKey::Name),
];

impl Ui {
    fn run(
        &mut self,
        term: &mut ratatui::DefaultTerminal,
        opts: &TopOptions,
    ) -> Result<(), TopError> {
        let mut next = Instant::now() + opts.interval;
        loop {
            term.draw(|f| self.draw(f))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                let Event::Key(k) = event::read()? else {
                    continue;
                };
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
                    return Ok(());
                }
                match self.key(k.code) {
                    Action::Quit => return Ok(()),
                    Action::Refresh => next = Instant::now(),
                    Action::None => {}
                }
                if Instant::now() < next {
                    continue;
                }
            }
            match client::top(&opts.socket, &self.query) {
                Ok(s) => {
                    self.snap = Some(s);
                    self.error = None;
                }
                Err(e) => self.error = Some(e.to_string()),
            }
            next = Instant::now() + opts.interval;
        }
    }

    fn key(&mut self, code: KeyCode) -> Action {
        if let Some(text) = self.editing.as_mut() {
            match code {
                KeyCode::Enter => {
                    let text = self.editing.take().unwrap_or_default();
                    set_filter(&mut self.query, &text);
                    return Action::Refresh;
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return Action::None;
        }
        match code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('/') => {
                self.editing = Some(filter_text(&self.query));
                Action::None
            }
            KeyCode::Char('c') => {
                set_filter(&mut self.query, "");
                Action::Refresh
            }
            KeyCode::Char(c) => match SORT_KEYS.iter().find(|(k, _)| *k == c) {
                Some((_, key)) => {
                    self.query.sort = *key;
                    Action::Refresh
                }
                None => Action::None,
            },
            _ => Action::None,
        }
    }

    fn draw(&self, f: &mut ratatui::Frame) {
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let head = match (&self.error, &self.snap) {
            (Some(e), _) => Line::from(format!("podtap top: {e}")).red(),
            (None, Some(s)) => Line::from(view::header(s)).bold(),
            (None, None) => Line::from("podtap top"),
        };
        f.render_widget(Paragraph::new(head), top);
        if let Some(s) = &self.snap {
            let areas = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(body);
            for (t, area) in view::tables(s).iter().zip(areas.iter()) {
                let widths: Vec<Constraint> = t
                    .columns
                    .iter()
                    .map(|c| Constraint::Length(c.width))
                    .collect();
                let header = Row::new(
                    t.columns
                        .iter()
                        .map(|c| view::header_cell(c, self.query.sort)),
                )
                .style(Style::new().bold().reversed());
                let rows = t.rows.iter().map(|r| {
                    Row::new(
                        r.iter()
                            .zip(t.columns)
                            .map(|(v, c)| view::fit(v, c.width as usize)),
                    )
                });
                let table = Table::new(rows, widths)
                    .header(header)
                    .block(Block::bordered().title(t.title.as_str()));
                f.render_widget(table, *area);
            }
        }
        let help = match &self.editing {
            Some(text) => format!(
                "filter: {text}_   (words: ns=NAMESPACE pod=NAME proto=PROTOCOL, a bare word is a \
                 pod; Enter applies, Esc cancels)"
            ),
            None => {
                let keys: Vec<String> = SORT_KEYS
                    .iter()
                    .map(|(k, s)| format!("{k} {}", s.name()))
                    .collect();
                format!("q quit | sort: {} | / filter, c clear", keys.join("  "))
            }
        };
        f.render_widget(Paragraph::new(Line::from(help).reversed()), bottom);
    }
}

enum Action {
    None,
    Quit,
    /// Ask the daemon now (the query changed).
    Refresh,
}

/// Set the query's filters from `ns=shop pod=web proto=http` (a bare word is a pod;
/// nothing clears them).
pub fn set_filter(q: &mut TopQuery, text: &str) {
    (q.namespace, q.pod, q.protocol) = (None, None, None);
    for w in text.split_whitespace() {
        let (k, v) = w.split_once('=').unwrap_or(("pod", w));
        let v = Some(v.to_string());
        match k {
            "ns" | "namespace" => q.namespace = v,
            "proto" | "protocol" => q.protocol = v,
            _ => q.pod = v,
        }
    }
}

/// The filters as [`set_filter`] reads them.
fn filter_text(q: &TopQuery) -> String {
    [
        ("ns", &q.namespace),
        ("pod", &q.pod),
        ("proto", &q.protocol),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_back_as_written() {
        let mut q = TopQuery::default();
        set_filter(&mut q, "ns=shop web proto=http");
        assert_eq!(q.namespace.as_deref(), Some("shop"));
        assert_eq!(q.pod.as_deref(), Some("web"));
        assert_eq!(q.protocol.as_deref(), Some("http"));
        assert_eq!(filter_text(&q), "ns=shop pod=web proto=http");
        set_filter(&mut q, "");
        assert_eq!(q, TopQuery::default());
    }
}
