//! Write what an encoder sees: `cargo run --release --example preview_input -- MODEL_DIR OUT.png IMG...`
//! (the prepared inputs side by side, before normalisation).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: preview_input MODEL_DIR OUT.png IMG...");
    let card = siamese::model::ModelCard::load(std::path::Path::new(&args[0]))?;
    let spec = &card.input;
    let (w, h) = (spec.width, spec.height);
    let n = (args.len() - 2) as u32;
    let mut sheet = image::GrayImage::new(w * n, h);
    for (k, f) in args[2..].iter().enumerate() {
        let img = siamese::preprocess::decode(&std::fs::read(f)?, Default::default())?;
        let planes = siamese::preprocess::to_planes(&img, spec);
        for y in 0..h {
            for x in 0..w {
                let v = planes[(y * w + x) as usize];
                sheet.put_pixel(k as u32 * w + x, y, image::Luma([(v * 255.0) as u8]));
            }
        }
    }
    sheet.save(&args[1])?;
    Ok(())
}
