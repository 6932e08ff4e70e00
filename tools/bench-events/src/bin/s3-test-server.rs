//! An S3-protocol server on loopback for benchmarks: serves DIR (each subdirectory a bucket)
//! with the access key and secret of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and prints its
//! endpoint URL on the first line.
//!
//! Usage: s3-test-server DIR [ADDR]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: s3-test-server DIR [ADDR]");
        std::process::exit(2);
    };
    let addr = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:0".into());
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("ADDR is free");
        println!("http://{}", listener.local_addr().unwrap());
        attendance_bench_events::s3::serve(std::path::Path::new(dir), listener, &key, &secret)
            .await
            .expect("DIR exists");
    });
}
