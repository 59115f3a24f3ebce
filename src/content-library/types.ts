/**
 * The content library's types (spec 10, "Concepts"; REFERENCE.md, "Content
 * library layout"). The same library code runs on the site server and on every
 * distribution point.
 */

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
  /** Library root, holding PkgLib/, DataLib/, FileLib/. */
  readonly root: string;
  /** Absolute path of a stored file: FileLib/<first 4 hex>/<HASH>. */
  filePath(hash: string): string;
  hasFile(hash: string): Promise<boolean>;
  /** The hashes of `hashes` not in FileLib, in the order given, without duplicates. */
  missingFiles(hashes: readonly string[]): Promise<string[]>;
  /**
   * Moves a file whose bytes are already verified to hash to `hash` into
   * FileLib (rename; same file system). If FileLib already holds it, the
   * source is deleted instead. Idempotent.
   */
  adoptFile(sourcePath: string, hash: string): Promise<void>;
  /**
   * Records a content: checks that every file is in FileLib (throws
   * CairnError CAIRN_DP_CONTENT_INCOMPLETE naming the missing ones), writes
   * DataLib/<ContentID>.INI and one INI per file, adds the content to each
   * file's companion reference list, and makes it the package's current
   * content in PkgLib/<PkgID>.INI. Idempotent: adding the same content twice
   * changes nothing.
   */
  addContent(def: ContentDefinition): Promise<void>;
  /** The definition of a stored content, or undefined. */
  getContent(contentId: string): Promise<ContentDefinition | undefined>;
  /** The package's current content (the one PkgLib names), or undefined. */
  currentContent(packageId: string): Promise<ContentDefinition | undefined>;
  /** Content IDs that reference the file (its companion list). */
  fileReferences(hash: string): Promise<string[]>;
}
