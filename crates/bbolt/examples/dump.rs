//! Prints a bbolt file's meta, buckets and keys: `cargo run -p ballot-bbolt --example dump FILE [LEN]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: dump FILE [LEN]")?;
    let len = args.next().map(|len| len.parse()).transpose()?;
    let db = ballot_bbolt::Db::open_file(std::path::Path::new(&path), len)?;
    println!("{:?}", db.meta());
    for name in db.buckets()? {
        println!("bucket {}", String::from_utf8_lossy(&name));
        db.for_each(&name, &mut |key, value| {
            println!("  {key:02x?} => {value:02x?}");
            Ok(())
        })?;
    }
    Ok(())
}
