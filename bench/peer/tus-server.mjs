// The reference tus server in Node.js, as its README sets it up: @tus/server with its file
// store, for the resumable-upload case. It writes each PATCH to the file without fsync and keeps
// its state in a JSON file beside it (no database). Usage: node tus-server.mjs PORT DIR
import { FileStore } from "@tus/file-store";
import { Server } from "@tus/server";

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: "/tus", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) });
