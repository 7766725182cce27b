// Drives a tus upload with tus-js-client under Node, in two steps, as a client whose transfer
// is interrupted:
//
//   start  ENDPOINT FILE CHUNK_SIZE [TOKEN]  creates the upload, sends its first chunk, aborts,
//                                            and prints the upload's URL
//   resume URL FILE CHUNK_SIZE [TOKEN]       asks the server how far the upload is and sends
//                                            the rest; prints the upload's URL
//   whole  ENDPOINT FILE CHUNK_SIZE [TOKEN]  uploads the whole file; prints the upload's URL
//
// TUS_OVERRIDE_PATCH=1: PATCH sent as POST with X-HTTP-Method-Override (overridePatchMethod).
// TUS_PARALLEL=N: sent as N partial uploads at once, then concatenated (parallelUploads).
// TUS_PROTOCOL: tus-js-client's `protocol` (`tus-v1` by default; `ietf-draft-05` speaks the
// IETF resumable-upload draft).
// TUS_UPLOAD_LINK: instead of a token, an upload link's secret, sent as `Upload-Link`.
// TUS_EXPIRES_IN: the file's lifetime, sent as `expires_in` metadata.
// TUS_JS_MODULES: the node_modules folder that holds tus-js-client.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [step, where, path, chunkSize, token] = process.argv.slice(2);
const tus = createRequire(`${process.env.TUS_JS_MODULES}/`)('tus-js-client');

const url = await new Promise((resolve, reject) => {
  const options = {
    chunkSize: Number(chunkSize),
    headers: process.env.TUS_UPLOAD_LINK
      ? { 'Upload-Link': process.env.TUS_UPLOAD_LINK }
      : token ? { Authorization: `Bearer ${token}` } : {},
    retryDelays: [0, 200, 500],
    onError: reject,
    onSuccess: () => resolve(upload.url),
    overridePatchMethod: process.env.TUS_OVERRIDE_PATCH === '1',
    parallelUploads: Number(process.env.TUS_PARALLEL || 1),
    protocol: process.env.TUS_PROTOCOL || 'tus-v1',
  };
  const metadata = { filename: 'tus-js.bin', filetype: 'application/octet-stream' };
  if (process.env.TUS_EXPIRES_IN) metadata.expires_in = process.env.TUS_EXPIRES_IN;
  if (step === 'whole') {
    options.endpoint = where;
    options.metadata = metadata;
  } else if (step === 'start') {
    options.endpoint = where;
    options.metadata = metadata;
    options.onChunkComplete = () => {
      upload.abort();
      resolve(upload.url);
    };
  } else {
    options.uploadUrl = where;
  }
  const upload = new tus.Upload(readFileSync(path), options);
  upload.start();
});
console.log(url);
