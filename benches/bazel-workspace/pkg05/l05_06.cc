#include "pkg05/l05_06.h"
#include "pkg05/l05_05.h"
#include <algorithm>
#include <numeric>

namespace l05_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 51); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 51, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l05_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_06:" + std::to_string(score({seed, seed * 15, 51}));
}
}  // namespace l05_06
