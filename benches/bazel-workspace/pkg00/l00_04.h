#ifndef PKG00_L00_04_H
#define PKG00_L00_04_H
#include <string>
#include <vector>

namespace l00_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_04

#endif
