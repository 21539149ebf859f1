//! The header-sync plot: panels of "header height over time" curves drawn
//! on an indexed-colour canvas with a built-in 5×7 bitmap font (no system
//! fonts), encoded by [`crate::png`].

/// Palette indices.
pub mod color {
    /// Background.
    pub const WHITE: u8 = 0;
    /// Text and axes.
    pub const BLACK: u8 = 1;
    /// Grid lines.
    pub const GRID: u8 = 2;
    /// Frames.
    pub const DARK: u8 = 3;
    /// Series colours.
    pub const SERIES: [u8; 5] = [4, 5, 6, 7, 8];
}

const PALETTE: [[u8; 3]; 9] = [
    [255, 255, 255],
    [20, 20, 20],
    [225, 225, 225],
    [110, 110, 110],
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
];

/// One curve.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Palette index.
    pub color: u8,
    /// Dashed line.
    pub dashed: bool,
    /// `(x, y)` points in data units.
    pub points: Vec<(f64, f64)>,
}

/// One chart.
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Its curves.
    pub series: Vec<Series>,
}

/// Draws `panels` side by side with shared axes and returns the PNG bytes.
pub fn render(
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    panels: &[Panel],
) -> Vec<u8> {
    const PANEL_W: usize = 720;
    const H: usize = 640;
    let width = PANEL_W * panels.len().max(1);
    let mut c = Canvas::new(width, H);
    c.text_centered(width / 2, 12, title, 3, color::BLACK);
    c.text_centered(width / 2, 40, subtitle, 2, color::DARK);
    let x_max = panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| &s.points)
        .map(|p| p.0)
        .fold(0.0, f64::max);
    let y_max = panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| &s.points)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let (x_step, x_top) = nice_axis(x_max.max(1e-3));
    let (y_step, y_top) = nice_axis(y_max.max(1.0));
    for (i, panel) in panels.iter().enumerate() {
        let left = i * PANEL_W + 100;
        let (top, right, bottom) = (100, i * PANEL_W + PANEL_W - 30, H - 70);
        let sx = |x: f64| left as f64 + x / x_top * (right - left) as f64;
        let sy = |y: f64| bottom as f64 - y / y_top * (bottom - top) as f64;
        c.text_centered((left + right) / 2, top - 28, &panel.title, 2, color::BLACK);
        // Grid, ticks and tick labels.
        let mut x = 0.0;
        while x <= x_top + x_step * 1e-6 {
            let px = sx(x).round() as usize;
            c.vline(px, top, bottom, color::GRID);
            c.text_centered(px, bottom + 8, &format_tick(x, x_step), 2, color::BLACK);
            x += x_step;
        }
        let mut y = 0.0;
        while y <= y_top + y_step * 1e-6 {
            let py = sy(y).round() as usize;
            c.hline(left, right, py, color::GRID);
            let label = format_count(y, y_step);
            c.text(
                left - 10 - text_width(&label, 2),
                py.saturating_sub(7),
                &label,
                2,
                color::BLACK,
            );
            y += y_step;
        }
        c.rect(left, top, right, bottom, color::DARK);
        c.text_centered((left + right) / 2, H - 32, x_label, 2, color::BLACK);
        c.text_vertical(
            i * PANEL_W + 14,
            (top + bottom) / 2,
            y_label,
            2,
            color::BLACK,
        );
        for s in &panel.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (sx(x), sy(y))).collect();
            c.polyline(&pts, s.color, s.dashed);
        }
        // Legend, lower right (the curves rise from the lower left).
        let rows = panel.series.len();
        let legend_w = panel
            .series
            .iter()
            .map(|s| text_width(&s.label, 2))
            .max()
            .unwrap_or(0)
            + 60;
        let (lx, ly) = (right - legend_w - 12, bottom - 12 - rows * 22);
        c.fill(lx - 8, ly - 8, right - 12, bottom - 8, color::WHITE);
        c.rect(lx - 8, ly - 8, right - 12, bottom - 8, color::DARK);
        for (k, s) in panel.series.iter().enumerate() {
            let yy = ly + k * 22 + 7;
            c.polyline(
                &[(lx as f64, yy as f64), ((lx + 40) as f64, yy as f64)],
                s.color,
                s.dashed,
            );
            c.text(lx + 50, yy - 7, &s.label, 2, color::BLACK);
        }
    }
    crate::png::encode_indexed(width as u32, H as u32, &PALETTE, &c.pixels)
}

/// A tick step of 1, 2 or 5 × 10^k giving 4–10 ticks, and the axis top (a multiple of it).
fn nice_axis(max: f64) -> (f64, f64) {
    let raw = max / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| max / s <= 8.0)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil() * step)
}

fn format_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else if step >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn format_count(v: f64, step: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if step >= 1000.0 {
        format!("{:.0}K", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn text_width(s: &str, scale: usize) -> usize {
    s.chars().count() * 6 * scale
}

struct Canvas {
    w: usize,
    h: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            pixels: vec![color::WHITE; w * h],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.pixels[y as usize * self.w + x as usize] = c;
        }
    }

    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: u8) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x as i64, y as i64, c);
            }
        }
    }

    fn hline(&mut self, x0: usize, x1: usize, y: usize, c: u8) {
        self.fill(x0, y, x1, y, c);
    }

    fn vline(&mut self, x: usize, y0: usize, y1: usize, c: u8) {
        self.fill(x, y0, x, y1, c);
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: u8) {
        self.hline(x0, x1, y0, c);
        self.hline(x0, x1, y1, c);
        self.vline(x0, y0, y1, c);
        self.vline(x1, y0, y1, c);
    }

    /// A 3-pixel-wide polyline; dashed lines alternate 12 pixels on, 8 off.
    fn polyline(&mut self, pts: &[(f64, f64)], c: u8, dashed: bool) {
        let mut walked = 0.0f64;
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
            let steps = (len.ceil() as usize).max(1);
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                let d = walked + t * len;
                if dashed && d % 20.0 >= 12.0 {
                    continue;
                }
                let (x, y) = (
                    (x0 + t * (x1 - x0)).round() as i64,
                    (y0 + t * (y1 - y0)).round() as i64,
                );
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        self.set(x + dx, y + dy, c);
                    }
                }
            }
            walked += len;
        }
    }

    fn glyph(&mut self, x: usize, y: usize, ch: char, scale: usize, c: u8) {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    self.fill(
                        x + col * scale,
                        y + r * scale,
                        x + col * scale + scale - 1,
                        y + r * scale + scale - 1,
                        c,
                    );
                }
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, c: u8) {
        for (i, ch) in s.chars().enumerate() {
            self.glyph(x + i * 6 * scale, y, ch, scale, c);
        }
    }

    fn text_centered(&mut self, cx: usize, y: usize, s: &str, scale: usize, c: u8) {
        self.text(cx.saturating_sub(text_width(s, scale) / 2), y, s, scale, c);
    }

    /// Text rotated 90° counter-clockwise, centred on `cy`.
    fn text_vertical(&mut self, x: usize, cy: usize, s: &str, scale: usize, c: u8) {
        let start = cy + text_width(s, scale) / 2;
        for (i, ch) in s.chars().enumerate() {
            let base = start.saturating_sub(i * 6 * scale);
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let (px, py) = (x + r * scale, base.saturating_sub(col * scale));
                        self.fill(px, py.saturating_sub(scale - 1), px + scale - 1, py, c);
                    }
                }
            }
        }
    }
}

/// The 5×7 glyph of `ch` (rows top to bottom, bit 4 = leftmost column).
/// Lower case is drawn as upper case; unknown characters as a box.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        ' ' => [0, 0, 0, 0, 0, 0, 0],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '~' => [0, 0, 0x08, 0x15, 0x02, 0, 0],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}
