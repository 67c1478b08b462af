/** Config manager: defaults, persisted overrides, path get/set/remove and the JSON Schema. */
export { writeFileAtomic, type AtomicWriteOptions } from './atomic.js';
export {
  CONFIG_FILE_NAME,
  ConfigManager,
  compileEffectiveConfig,
  type ConfigChange,
  type ConfigChangeListener,
  type ConfigManagerOptions,
  type EffectiveCacheConfig,
  type EffectiveConfig,
} from './config.js';
export { formatGoDuration, formatGoDurationNs, parseGoDuration, parseGoDurationNs } from './duration.js';
export { MAX_CONFIG_INDEX, formatConfigPath, parseConfigPath, type ConfigPathSegment } from './path.js';
export {
  CONFIG_LOG_LEVELS,
  CONTAINER_RUNTIMES,
  KNOWN_CONFIG_KEYS,
  KNOWN_CONFIG_SECTIONS,
  SNAPSHOT_BACKENDS,
  configSchema,
  defaultConfig,
  type ConfigLogLevel,
  type ContainerRuntimeMode,
  type KnownConfigKey,
  type SnapshotBackendMode,
} from './schema.js';
export { type JsonObject, type JsonValue } from './tree.js';
