//! The render budget: how much output, how many loop iterations and how much time one
//! rendered part may take. Checked while rendering, so a template over it stops there:
//! the output goes through a writer that refuses bytes past the cap and checks the clock,
//! every loop iteration calls the counter [`structure::instrument`] put there, and the
//! gateway's own `replace` refuses to build a value over the cap.
//!
//! The limits of the render in progress live in a thread-local: Tera renders a template
//! on the calling thread, and its functions and filters cannot be handed per-render state.

use std::cell::Cell;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::structure;
use crate::config::TemplatesConfig;

/// Limits on rendering one part (subject, text, HTML or link) of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// Largest rendered part, in bytes.
    pub max_output_bytes: usize,
    /// Most loop iterations in one part.
    pub max_loop_iterations: u64,
    /// Longest one part may take to render.
    pub max_time: Duration,
    /// Longest the wording of one broadcast may take to render, all patients together (a
    /// personal template renders once per patient).
    pub max_broadcast_time: Duration,
}

impl RenderBudget {
    /// The budget `[templates]` sets.
    pub fn from_config(templates: &TemplatesConfig) -> Self {
        Self {
            max_output_bytes: templates.max_output_bytes,
            max_loop_iterations: templates.max_loop_iterations,
            max_time: Duration::from_millis(templates.max_render_ms),
            max_broadcast_time: Duration::from_secs(templates.max_broadcast_render_seconds),
        }
    }
}

impl Default for RenderBudget {
    /// The budget when `[templates]` leaves it out.
    fn default() -> Self {
        Self {
            max_output_bytes: TemplatesConfig::DEFAULT_MAX_OUTPUT_BYTES,
            max_loop_iterations: TemplatesConfig::DEFAULT_MAX_LOOP_ITERATIONS,
            max_time: Duration::from_millis(TemplatesConfig::DEFAULT_MAX_RENDER_MS),
            max_broadcast_time: Duration::from_secs(
                TemplatesConfig::DEFAULT_MAX_BROADCAST_RENDER_SECONDS,
            ),
        }
    }
}

/// Which limit a render went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The output (or a value built on the way) grew past `max_output_bytes`.
    Output(usize),
    /// Loops ran more than `max_loop_iterations` times.
    Loops(u64),
    /// It took longer than `max_time`.
    Time(Duration),
    /// A broadcast's wording took longer than `max_broadcast_time` in all.
    BroadcastTime(Duration),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Output(n) => write!(f, "renders to more than {n} bytes"),
            Exceeded::Loops(n) => write!(f, "loops run more than {n} times"),
            Exceeded::Time(t) => write!(f, "takes longer than {} ms to render", t.as_millis()),
            Exceeded::BroadcastTime(t) => write!(
                f,
                "takes longer than {} s to render for the whole broadcast",
                t.as_secs()
            ),
        }
    }
}

#[derive(Clone, Copy)]
struct Running {
    budget: RenderBudget,
    deadline: Instant,
    loops_left: u64,
    exceeded: Option<Exceeded>,
}

thread_local! {
    static RUNNING: Cell<Option<Running>> = const { Cell::new(None) };
}

/// Marks the limit as exceeded and returns it (the first one found is kept).
fn exceed(what: Exceeded) -> Exceeded {
    RUNNING.with(|r| {
        if let Some(mut running) = r.get() {
            let first = *running.exceeded.get_or_insert(what);
            r.set(Some(running));
            first
        } else {
            what
        }
    })
}

fn check_clock() -> Result<(), Exceeded> {
    match RUNNING.with(|r| r.get()) {
        Some(running) if Instant::now() > running.deadline => {
            Err(exceed(Exceeded::Time(running.budget.max_time)))
        }
        _ => Ok(()),
    }
}

/// Renders `name` within `budget`: `Err(Ok(exceeded))` if it went over a limit,
/// `Err(Err(e))` if Tera failed for another reason.
pub fn render(
    tera: &tera::Tera,
    name: &str,
    context: &tera::Context,
    budget: &RenderBudget,
) -> Result<String, Result<Exceeded, tera::Error>> {
    let previous = RUNNING.with(|r| {
        r.replace(Some(Running {
            budget: *budget,
            deadline: Instant::now() + budget.max_time,
            loops_left: budget.max_loop_iterations,
            exceeded: None,
        }))
    });
    let mut out = Capped {
        buf: Vec::new(),
        max: budget.max_output_bytes,
    };
    let result = tera.render_to(name, context, &mut out);
    let exceeded = RUNNING
        .with(|r| r.replace(previous))
        .and_then(|r| r.exceeded);
    match (result, exceeded) {
        (_, Some(exceeded)) => Err(Ok(exceeded)),
        (Err(e), None) => Err(Err(e)),
        (Ok(()), None) => Ok(String::from_utf8_lossy(&out.buf).into_owned()),
    }
}

/// A buffer that refuses to grow past `max` bytes and checks the clock on every write.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(bytes.len()) > self.max {
            let e = exceed(Exceeded::Output(self.max));
            return Err(io::Error::other(e.to_string()));
        }
        check_clock().map_err(|e| io::Error::other(e.to_string()))?;
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts one loop iteration (called at the top of every loop body) and checks the clock.
fn tick(_: tera::Kwargs, _: &tera::State) -> tera::TeraResult<&'static str> {
    let over = RUNNING.with(|r| {
        let mut running = r.get()?;
        if running.loops_left == 0 {
            return Some(Exceeded::Loops(running.budget.max_loop_iterations));
        }
        running.loops_left -= 1;
        r.set(Some(running));
        None
    });
    if let Some(over) = over {
        return Err(tera::Error::message(exceed(over).to_string()));
    }
    check_clock().map_err(|e| tera::Error::message(e.to_string()))?;
    Ok("")
}

/// `replace(from=, to=)` that refuses to build a string over the output cap.
fn replace(value: &str, kwargs: tera::Kwargs, _: &tera::State) -> tera::TeraResult<String> {
    let from: &str = kwargs.must_get("from")?;
    let to: &str = kwargs.must_get("to")?;
    let found = if from.is_empty() {
        value.chars().count() + 1
    } else {
        value.matches(from).count()
    };
    let size = value
        .len()
        .saturating_add(found.saturating_mul(to.len()))
        .saturating_sub(found.saturating_mul(from.len()));
    let max = RUNNING.with(|r| r.get().map(|r| r.budget.max_output_bytes));
    if let Some(max) = max.filter(|max| size > *max) {
        return Err(tera::Error::message(
            exceed(Exceeded::Output(max)).to_string(),
        ));
    }
    check_clock().map_err(|e| tera::Error::message(e.to_string()))?;
    Ok(value.replace(from, to))
}

/// Registers the loop counter and the capped `replace` on `tera`.
pub fn register(tera: &mut tera::Tera) {
    tera.register_function(structure::TICK_FUNCTION, tick);
    tera.register_filter("replace", replace);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tera_with(template: &str) -> tera::Tera {
        let mut tera = tera::Tera::new();
        register(&mut tera);
        let counted = structure::instrument(template).unwrap();
        tera.add_raw_template("t", &counted).unwrap();
        tera
    }

    fn context(details: &str) -> tera::Context {
        let mut ctx = tera::Context::new();
        ctx.insert("details", details);
        ctx
    }

    #[test]
    fn output_past_the_cap_stops_the_render() {
        let tera = tera_with(
            "{% for a in details %}{% for b in details %}{{ details }}{% endfor %}{% endfor %}",
        );
        let budget = RenderBudget {
            max_loop_iterations: u64::MAX,
            ..RenderBudget::default()
        };
        let started = Instant::now();
        let result = render(&tera, "t", &context(&"x".repeat(2000)), &budget);
        assert_eq!(result.unwrap_err().unwrap(), Exceeded::Output(64 * 1024));
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[test]
    fn loops_without_output_are_counted() {
        let tera =
            tera_with("{% for a in details %}{% for b in details %}{% endfor %}{% endfor %}");
        let result = render(
            &tera,
            "t",
            &context(&"x".repeat(2000)),
            &RenderBudget::default(),
        );
        assert_eq!(result.unwrap_err().unwrap(), Exceeded::Loops(10_000));
        let fine = render(&tera, "t", &context("abc"), &RenderBudget::default());
        assert_eq!(fine.unwrap(), "");
    }

    #[test]
    fn replace_cannot_multiply_a_value_past_the_cap() {
        let tera = tera_with("{{ details | replace(from=\"x\", to=details) | replace(from=\"x\", to=details) | length }}");
        let result = render(
            &tera,
            "t",
            &context(&"x".repeat(2000)),
            &RenderBudget::default(),
        );
        assert_eq!(result.unwrap_err().unwrap(), Exceeded::Output(64 * 1024));
        let fine = render(&tera, "t", &context("xy"), &RenderBudget::default());
        assert_eq!(fine.unwrap(), "4"); // "xy" -> "xyy" -> "xyyy"
    }

    #[test]
    fn time_is_checked_while_rendering() {
        let tera = tera_with(
            "{% for a in details %}{% for b in details %}{{ a }}{% endfor %}{% endfor %}",
        );
        let budget = RenderBudget {
            max_output_bytes: usize::MAX,
            max_loop_iterations: u64::MAX,
            max_time: Duration::from_millis(20),
            ..RenderBudget::default()
        };
        let started = Instant::now();
        let result = render(&tera, "t", &context(&"x".repeat(2000)), &budget);
        assert_eq!(
            result.unwrap_err().unwrap(),
            Exceeded::Time(Duration::from_millis(20))
        );
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
}
