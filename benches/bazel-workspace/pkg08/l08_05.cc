#include "pkg08/l08_05.h"
#include "pkg08/l08_04.h"
#include <algorithm>
#include <numeric>

namespace l08_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 77); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 77, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l08_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_05:" + std::to_string(score({seed, seed * 15, 77}));
}
}  // namespace l08_05
