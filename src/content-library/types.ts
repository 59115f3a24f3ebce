/**
 * The content library's types (spec 10, "Concepts"; REFERENCE.md, "Content
 * library layout"). The same library code runs on the site server and on every
 * distribution point.
 */

import type { Readable } from 'node:stream';
import type { FileManifest, StoredFile } from './chunk-lib.ts';

/** Hash algorithm 32780 (0x800C) is SHA-256; hashes are 64 upper-case hex characters. */
export const HASH_ALGORITHM = 32780;

/** One file of a content. */
export interface FileEntry {
  /** Relative path inside the content, '/'-separated, never absolute, never containing '..' or empty segments. */
  readonly path: string;
  /** SHA-256 of the file's bytes, upper-case hex. */
  readonly hash: string;
  readonly size: number;
  /** POSIX mode bits (permissions only). */
  readonly mode: number;
  /** Modification time of the source file, ISO 8601. */
  readonly mtime: string;
}

/**
 * Per-file signature for delta transfer: the file's content-defined chunks
 * (chunker.ts), each as [length, truncated SHA-256], in file order. Only
 * files of at least SIGNATURE_MIN_FILE_SIZE bytes have one.
 */
export interface FileSignature {
  readonly hash: string;
  readonly size: number;
  readonly chunks: readonly (readonly [number, string])[];
}

/** A content: one version of (part of) a package. ID `<PkgID>.<version>`. */
export interface ContentDefinition {
  readonly contentId: string;
  readonly packageId: string;
  readonly version: number;
  /** SHA-256 over the canonical definition text (see `definitionHash`). */
  readonly hash: string;
  /** Total bytes of all files. */
  readonly size: number;
  /** Every folder (relative path), so empty folders survive. Sorted. */
  readonly folders: readonly string[];
  /** Every file, sorted by path. */
  readonly files: readonly FileEntry[];
}

export interface ContentLibrary {
  /** Library root, holding PkgLib/, DataLib/, FileLib/, ChunkLib/. */
  readonly root: string;
  /** ChunkLib: large files' chunks (ADR 0009). */
  readonly chunkDir: string;
  /**
   * Absolute path of a stored chunk: ChunkLib/<first 2 hex>/<HASH>. Chunks
   * are written by the hash workers (storeChunk), whose bytes they hashed.
   */
  chunkPath(hash: string): string;
  /** The chunk hashes of `hashes` not in ChunkLib, in the order given, without duplicates. */
  missingChunks(hashes: readonly string[]): Promise<string[]>;
  /** What FileLib holds for `hash`: its size, and its manifest when it is stored as chunks. Undefined when absent. */
  statFile(hash: string): Promise<StoredFile | undefined>;
  /** The manifest of a chunked file, or undefined (absent, or stored whole). */
  readManifest(hash: string): Promise<FileManifest | undefined>;
  /**
   * The bytes of a stored file, whole or chunked, or of the inclusive byte
   * range `range`. Every reader of library files uses this (never
   * `filePath` alone). Throws CAIRN_DP_FILE_NOT_FOUND when it is absent.
   */
  openFileReader(hash: string, range?: { readonly start: number; readonly end: number }): Promise<{ size: number; chunked: boolean; stream: Readable }>;
  /**
   * Stores a chunked file's manifest at FileLib/<hash> once every chunk it
   * names is in ChunkLib (else throws ChunksMissingError, code
   * CAIRN_DP_CONTENT_INCOMPLETE, naming them) and, with `verify`, the chunks
   * in order hash to the manifest's hash (else CAIRN_DP_HASH_MISMATCH). The
   * file system is flushed first. A file FileLib holds already is kept,
   * unless `replace`. Idempotent. Returns how long the whole-file check
   * and the flush took, and how many chunks were flushed, for the log.
   */
  adoptManifest(manifest: FileManifest, opts: { readonly verify: boolean; readonly replace?: boolean }): Promise<ManifestAdoption>;
  /** At process start: clears ChunkLib/.tmp and finishes removals (and adoptions) cut short. */
  recover(): Promise<{ referencesCollected: number; chunksDeleted: number }>;
  /** Absolute path of a stored file: FileLib/<first 4 hex>/<HASH>. */
  filePath(hash: string): string;
  hasFile(hash: string): Promise<boolean>;
  /** The hashes of `hashes` not in FileLib, in the order given, without duplicates. */
  missingFiles(hashes: readonly string[]): Promise<string[]>;
  /**
   * Moves a file whose bytes are already verified to hash to `hash` into
   * FileLib (rename; same file system). If FileLib already holds it, the
   * source is deleted instead, unless `replace` is set (a redistribute
   * rewriting a damaged copy): then the new bytes replace the old. Idempotent.
   */
  adoptFile(sourcePath: string, hash: string, opts?: { readonly replace?: boolean }): Promise<void>;
  /**
   * Records a content: checks that every file is in FileLib (throws
   * CairnError CAIRN_DP_CONTENT_INCOMPLETE naming the missing ones), writes
   * DataLib/<ContentID>.INI and one INI per file, adds the content to each
   * file's companion reference list, and makes it the package's current
   * content in PkgLib/<PkgID>.INI. Idempotent: adding the same content twice
   * changes nothing.
   */
  addContent(def: ContentDefinition): Promise<void>;
  /**
   * Writes the per-file records of a content that is not stored yet
   * (DataLib/<ContentID>/ and its JSON copy, not its INI and not the
   * companion lists), so that `addContent` finds them written and skips that
   * step. A DP does it while the content's files still arrive. Returns false
   * when there was nothing to do (stored already, or prepared the same way).
   * A content prepared and never added is a record without an INI, which
   * `listContents` lists and `removeContent` removes like any other.
   */
  prepareContent(def: ContentDefinition): Promise<boolean>;
  /**
   * Stores small files that arrived together (a `cairn-bundle/1` upload):
   * each is hashed and enters FileLib only when its bytes match its hash,
   * written under `tempDir` (same file system) and renamed into place. A file
   * FileLib holds already is not written again unless `replace`. A write
   * failure (ENOSPC…) stops it; what was stored before is reported.
   */
  storeFiles(data: Uint8Array, entries: readonly { hash: string; size: number; start: number }[], opts: { readonly replace: boolean; readonly tempDir: string }): Promise<StoredFiles>;
  /** The definition of a stored content, or undefined. */
  getContent(contentId: string): Promise<ContentDefinition | undefined>;
  /** The package's current content (the one PkgLib names), or undefined. */
  currentContent(packageId: string): Promise<ContentDefinition | undefined>;
  /** Content IDs that reference the file (its companion list). */
  fileReferences(hash: string): Promise<string[]>;
  /** The package's contents in DataLib, complete or partly removed, sorted by version. */
  listContents(packageId: string): Promise<string[]>;
  /**
   * Removes a content: from PkgLib if it is named there, its DataLib record,
   * its signatures, and its name from each file's companion list; a file no
   * content references any more leaves FileLib. Idempotent, and a removal cut
   * short is finished by calling it again.
   */
  removeContent(contentId: string): Promise<RemovalResult>;
  /** Removes every content of the package older than `keepContentId` (after an update has made that one current). */
  removeOlderContents(packageId: string, keepContentId: string): Promise<RemovalResult>;
  /**
   * Contents older than their package's current content (the one PkgLib
   * names): left by a superseded-version removal that a stop cut short or
   * that had not run yet. Packages PkgLib does not name are not included.
   */
  supersededContents(): Promise<string[]>;
  /** Removes the package: its PkgLib entry first (so nothing serves it), then every content of it. */
  removePackage(packageId: string): Promise<RemovalResult>;
  /** Re-hashes every file of a stored content; returns what is missing or damaged (empty when valid). */
  validateContent(contentId: string): Promise<ValidationProblem[]>;
}

/** What adopting a manifest cost (ADR 0009, amendment 3). */
export interface ManifestAdoption {
  /** Milliseconds spent hashing the bytes in order (0 without `verify`). */
  readonly verifyMs: number;
  /** Milliseconds spent flushing its chunks, and how many (0 when FileLib held it already). */
  readonly flushMs: number;
  readonly flushed: number;
}

export interface RemovalResult {
  readonly contents: readonly string[];
  /** Files deleted from FileLib because no content references them any more. */
  readonly filesDeleted: number;
  readonly bytesFreed: number;
}

export interface ValidationProblem {
  readonly path: string;
  readonly hash: string;
  readonly problem: 'missing' | 'hash mismatch' | 'size mismatch';
  /** What the file on disk hashes to, for a mismatch (for a chunk's mismatch, what the chunk hashes to). */
  readonly actual?: string;
  /** For a chunked file, the first chunk found missing or damaged. */
  readonly chunk?: string;
}

/** What `storeFiles` did: hashes FileLib holds now, those written now, those whose bytes did not match, and the error that stopped it. */
export interface StoredFiles {
  readonly stored: string[];
  readonly written: string[];
  readonly rejected: { hash: string; actual: string }[];
  readonly writeError?: { code: string; message: string } | undefined;
}
