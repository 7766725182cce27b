//! A plain blocking HTTP/1.1 exchange over one keep-alive connection, for the cases that send
//! requests one after another (tus) and for reading back what a server stored.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

pub struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    address: SocketAddr,
    /// Sent with every request (tus: `Tus-Resumable`).
    common: Vec<(&'static str, String)>,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The path of `location`, which a server may give as an absolute URL.
pub fn path_of(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => location,
    }
}

impl Http {
    pub fn connect(address: SocketAddr, common: Vec<(&'static str, String)>) -> io::Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            address,
            common,
        })
    }

    pub fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> io::Result<Answer> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        // Only where a body may go: some servers trip over a GET that announces an empty one.
        if !matches!(method, "GET" | "HEAD") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in self.common.iter().chain(headers) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {line:?}")))?;
        let mut answer = Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        };
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                answer
                    .headers
                    .push((name.to_owned(), value.trim().to_owned()));
            }
        }
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"));
        if chunked {
            self.read_chunked(&mut answer.body)?;
        } else {
            let length = answer
                .header("content-length")
                .and_then(|length| length.parse().ok())
                .unwrap_or(0);
            answer.body = vec![0; length];
            self.reader.read_exact(&mut answer.body)?;
        }
        Ok(answer)
    }

    fn read_chunked(&mut self, body: &mut Vec<u8>) -> io::Result<()> {
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("not a chunk size: {line:?}")))?;
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            line.clear();
            self.reader.read_line(&mut line)?;
            if size == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn a_location_is_reduced_to_its_path() {
        assert_eq!(path_of("http://127.0.0.1:1/tus/abc"), "/tus/abc");
        assert_eq!(path_of("/tus/abc"), "/tus/abc");
        assert_eq!(path_of("http://127.0.0.1:1"), "/");
    }
}
