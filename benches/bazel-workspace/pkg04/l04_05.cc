#include "pkg04/l04_05.h"
#include "pkg04/l04_04.h"
#include <algorithm>
#include <numeric>

namespace l04_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 41); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 41, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l04_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_05:" + std::to_string(score({seed, seed * 5, 41}));
}
}  // namespace l04_05
